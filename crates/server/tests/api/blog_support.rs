//! Helpers for the blog tests: writing posts and comments as a signed-in user.

use basis_auth::role::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts_support::Account;
use crate::helpers::TestApp;

/// A post body with `title` and the other fields filled in.
pub fn post(title: &str) -> Value {
    json!({
        "title": title,
        "body": format!("Some *Markdown* about {title}."),
        "category": "engineering",
        "tags": ["rust", "http"],
        "status": "published",
    })
}

/// An author, a second user, a moderator and an admin, each signed in.
pub struct Cast {
    pub author: Account,
    pub other: Account,
    pub moderator: Account,
    pub admin: Account,
}

impl TestApp {
    pub async fn cast(&self) -> Cast {
        Cast {
            author: self.account("author@example.com").await,
            other: self.account("other@example.com").await,
            moderator: self
                .account_with_role("mod@example.com", Role::Moderator)
                .await,
            admin: self
                .account_with_role("admin@example.com", Role::Admin)
                .await,
        }
    }

    /// Creates a post as `who`, asserting 201, and returns its body.
    pub async fn new_post(&self, who: &Account, body: Value) -> Value {
        let response = self
            .bearer(Method::POST, "/posts", &who.access)
            .json(&body)
            .send()
            .await
            .expect("a response");
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        response.json().await.expect("a JSON body")
    }

    /// Comments on `post_id` as `who`, asserting 201, and returns the comment.
    pub async fn new_comment(&self, who: &Account, post_id: &str, text: &str) -> Value {
        let response = self
            .bearer(
                Method::POST,
                &format!("/posts/{post_id}/comments"),
                &who.access,
            )
            .json(&json!({ "body": text }))
            .send()
            .await
            .expect("a response");
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        response.json().await.expect("a JSON body")
    }

    /// A request as `who` (or anonymous).
    pub fn as_user(
        &self,
        method: Method,
        path: &str,
        who: Option<&Account>,
    ) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match who {
            Some(account) => request.bearer_auth(&account.access),
            None => request,
        }
    }

    /// A merge patch request as `who`.
    pub fn merge_patch(&self, path: &str, who: &Account, patch: Value) -> reqwest::RequestBuilder {
        self.bearer(Method::PATCH, path, &who.access)
            .header("content-type", "application/merge-patch+json")
            .body(patch.to_string())
    }

    /// GETs `path` as `who` and returns the status and JSON body (Null when there is none).
    pub async fn get_json(&self, path: &str, who: Option<&Account>) -> (u16, Value) {
        let response = self
            .as_user(Method::GET, path, who)
            .send()
            .await
            .expect("a response");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// A response header as text.
pub fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
