//! Products and orders: the SQL, and the checks an order passes before its saga starts.

use basis_ledger::Currency;

use crate::model::{Error, NewProduct, Order, OrderItem, OrderRequest, Product, ProductPatch};
use crate::saga::{self, Step};
use crate::{Result, Shop, in_tx};

/// Most units of one product in one order.
pub const MAX_QUANTITY: i64 = 1_000;
/// Most lines in one order.
pub const MAX_ITEMS: usize = 50;

impl Shop {
    /// Adds a product.
    pub async fn create_product(&self, new: &NewProduct) -> Result<Product> {
        let now = self.clock.now_ms();
        Ok(basis_store::on_pool!(self.store, write, pool => {
            sqlx::query_as(
                "INSERT INTO shop_products (name, price, currency, stock, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5) RETURNING *",
            )
            .bind(&new.name)
            .bind(new.price)
            .bind(new.currency.as_str())
            .bind(new.stock)
            .bind(now)
            .fetch_one(pool)
            .await
        })?)
    }

    /// Changes a product's price and/or stock.
    pub async fn patch_product(&self, id: i64, patch: &ProductPatch) -> Result<Product> {
        let now = self.clock.now_ms();
        let found: Option<Product> = basis_store::on_pool!(self.store, write, pool => {
            sqlx::query_as(
                "UPDATE shop_products SET price = COALESCE($1, price), \
                 stock = COALESCE($2, stock), updated_at = $3 WHERE id = $4 RETURNING *",
            )
            .bind(patch.price)
            .bind(patch.stock)
            .bind(now)
            .bind(id)
            .fetch_optional(pool)
            .await
        })?;
        found.ok_or(Error::ProductNotFound(id))
    }

    /// A product.
    pub async fn product(&self, id: i64) -> Result<Product> {
        let found: Option<Product> = basis_store::on_pool!(self.store, write, pool => {
            sqlx::query_as("SELECT * FROM shop_products WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
        })?;
        found.ok_or(Error::ProductNotFound(id))
    }

    /// Products by id after `after`, at most `limit`.
    pub async fn products(&self, after: i64, limit: i64) -> Result<Vec<Product>> {
        Ok(basis_store::on_pool!(self.store, read, pool => {
            sqlx::query_as("SELECT * FROM shop_products WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await
        })?)
    }

    /// Checks an order and stores it with its saga (status `running` at the first step), in
    /// one transaction. Every refusal names its field and stores nothing.
    pub async fn place_order(&self, req: &OrderRequest) -> Result<Order> {
        if req.items.is_empty() || req.items.len() > MAX_ITEMS {
            return Err(Error::invalid(
                "items",
                format!("must list 1 to {MAX_ITEMS} products"),
            ));
        }
        let mut currency: Option<String> = None;
        let mut total: i64 = 0;
        let mut lines = Vec::with_capacity(req.items.len());
        for (i, &(product_id, quantity)) in req.items.iter().enumerate() {
            if req.items[..i].iter().any(|(p, _)| *p == product_id) {
                return Err(Error::invalid(
                    format!("items[{i}].productId"),
                    "lists a product twice",
                ));
            }
            let product = match self.product(product_id).await {
                Ok(p) => p,
                Err(Error::ProductNotFound(_)) => {
                    return Err(Error::invalid(
                        format!("items[{i}].productId"),
                        "no such product",
                    ));
                }
                Err(e) => return Err(e),
            };
            if quantity < 1 || quantity > MAX_QUANTITY.min(product.stock) {
                return Err(Error::invalid(
                    format!("items[{i}].quantity"),
                    format!(
                        "must be from 1 to {} (units in stock, at most {MAX_QUANTITY})",
                        MAX_QUANTITY.min(product.stock)
                    ),
                ));
            }
            match &currency {
                Some(c) if *c != product.currency => {
                    return Err(Error::invalid(
                        format!("items[{i}].productId"),
                        "is priced in another currency than the other items",
                    ));
                }
                _ => currency = Some(product.currency.clone()),
            }
            total = quantity
                .checked_mul(product.price)
                .and_then(|line| total.checked_add(line))
                .ok_or_else(|| Error::invalid("items", "the total does not fit in 64 bits"))?;
            lines.push((product_id, quantity, product.price));
        }
        let currency = currency.unwrap_or_default();
        let account = match self.ledger.account(req.payment_account).await {
            Ok(a) if a.owner_id.as_deref() == Some(req.buyer_id.as_str()) => a,
            Ok(_) | Err(basis_ledger::Error::AccountNotFound(_)) => {
                return Err(Error::invalid(
                    "paymentAccount",
                    "is not one of your accounts",
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if account.currency != currency {
            return Err(Error::invalid(
                "paymentAccount",
                format!("is in {}, the order in {currency}", account.currency),
            ));
        }
        // The shop's account exists before the saga needs it.
        self.shop_account(&Currency::parse(&currency)?).await?;
        let now = self.clock.now_ms();
        let deadline = now + saga::DEADLINE_MS;
        let order: Order = in_tx!(self.store, tx => {
            let order: Order = sqlx::query_as(
                "INSERT INTO shop_orders (buyer_id, payment_account, currency, total, status, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, 'pending', $5, $5) RETURNING *",
            )
            .bind(&req.buyer_id)
            .bind(req.payment_account)
            .bind(&currency)
            .bind(total)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            for (product_id, quantity, price) in &lines {
                sqlx::query(
                    "INSERT INTO shop_order_items (order_id, product_id, quantity, unit_price) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(order.id)
                .bind(product_id)
                .bind(quantity)
                .bind(price)
                .execute(&mut *tx)
                .await?;
            }
            let first = Step::Reserve;
            sqlx::query(
                "INSERT INTO shop_sagas (id, status, step, attempt, step_key, deadline, \
                 next_run_at, created_at, updated_at) VALUES ($1, 'running', $2, 0, $3, $4, $5, $5, $5)",
            )
            .bind(order.id)
            .bind(first.as_str())
            .bind(first.key(order.id))
            .bind(deadline)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            order
        });
        metrics::counter!("shop_orders_total").increment(1);
        Ok(order)
    }

    /// An order.
    pub async fn order(&self, id: i64) -> Result<Order> {
        let found: Option<Order> = basis_store::on_pool!(self.store, write, pool => {
            sqlx::query_as("SELECT * FROM shop_orders WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
        })?;
        found.ok_or(Error::OrderNotFound(id))
    }

    /// An order's lines.
    pub async fn order_items(&self, id: i64) -> Result<Vec<OrderItem>> {
        Ok(basis_store::on_pool!(self.store, write, pool => {
            sqlx::query_as("SELECT * FROM shop_order_items WHERE order_id = $1 ORDER BY product_id")
                .bind(id)
                .fetch_all(pool)
                .await
        })?)
    }
}
