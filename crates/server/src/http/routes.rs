//! The route table: each resource adds its routes here, one method and path at a time, so
//! the application knows every `(method, path)` it serves. The OpenAPI test reads that list
//! from the very router the server runs, and fails on a route the document does not describe.

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodRouter, on};

/// A router under construction, with the list of what it serves.
#[derive(Debug)]
pub struct Routes<S> {
    router: Router<S>,
    served: Vec<(Method, &'static str)>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! method {
    ($(#[$doc:meta] $name:ident => $method:ident, $filter:ident;)*) => {$(
        #[$doc]
        pub fn $name<H, T>(self, path: &'static str, handler: H) -> Self
        where
            H: Handler<T, S>,
            T: 'static,
        {
            self.add(Method::$method, path, on(axum::routing::MethodFilter::$filter, handler))
        }
    )*};
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    /// No routes.
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            served: Vec::new(),
        }
    }

    method! {
        /// Serves `GET` (and so `HEAD`) on `path`.
        get => GET, GET;
        /// Serves `POST` on `path`.
        post => POST, POST;
        /// Serves `PUT` on `path`.
        put => PUT, PUT;
        /// Serves `PATCH` on `path`.
        patch => PATCH, PATCH;
        /// Serves `DELETE` on `path`.
        delete => DELETE, DELETE;
        /// Serves `OPTIONS` on `path`.
        options => OPTIONS, OPTIONS;
    }

    fn add(mut self, method: Method, path: &'static str, route: MethodRouter<S>) -> Self {
        // axum merges the method routers of one path added in several calls.
        self.router = self.router.route(path, route);
        self.served.push((method, path));
        self
    }

    /// These routes and `other`'s.
    pub fn merge(mut self, other: Self) -> Self {
        self.router = self.router.merge(other.router);
        self.served.extend(other.served);
        self
    }

    /// Every `(method, path)` served, in the order added.
    pub fn served(&self) -> &[(Method, &'static str)] {
        &self.served
    }

    /// The router.
    pub fn into_router(self) -> Router<S> {
        self.router
    }
}
