//! A small browser for the page tests: keeps cookies as a browser would (these are
//! `Secure` cookies over plain HTTP to 127.0.0.1, which reqwest's jar would not send),
//! sends `Accept: text/html` and our `Origin` on posts, and reads forms' tokens.

use std::collections::BTreeMap;

use regex::Regex;
use reqwest::header::HeaderMap;

use crate::helpers::TestApp;

/// A page as received.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// The `Location` header.
    pub fn location(&self) -> &str {
        self.headers["location"].to_str().expect("a text location")
    }

    /// The value of the first hidden `csrf` field.
    pub fn token(&self) -> String {
        let field = Regex::new(r#"name="csrf" value="([^"]+)""#).unwrap();
        field
            .captures(&self.body)
            .unwrap_or_else(|| panic!("no form token in {}", self.body))[1]
            .to_owned()
    }

    /// The Content-Security-Policy header.
    pub fn policy(&self) -> &str {
        self.headers["content-security-policy"]
            .to_str()
            .expect("a text policy")
    }

    /// Whether this is an HTML page.
    pub fn is_html(&self) -> bool {
        self.headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/html"))
    }
}

/// A browser with its own cookies.
pub struct Browser<'a> {
    pub app: &'a TestApp,
    cookies: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Whether the browser holds cookie `name`.
    pub fn has_cookie(&self, name: &str) -> bool {
        self.cookies.contains_key(name)
    }

    async fn read(&mut self, response: reqwest::Response) -> Page {
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().expect("a text cookie");
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Page {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.expect("a body"),
        }
    }

    /// `GET path` as a browser asks for a page.
    pub async fn get(&mut self, path: &str) -> Page {
        let response = self
            .app
            .client
            .get(self.app.url(path))
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("a response");
        self.read(response).await
    }

    /// Posts `fields` as a form from our own origin.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let origin = self.app.url("");
        self.post_from(path, fields, &origin).await
    }

    /// Posts `fields` as a form sent from a page of `origin`.
    pub async fn post_from(&mut self, path: &str, fields: &[(&str, &str)], origin: &str) -> Page {
        let response = self
            .app
            .client
            .post(self.app.url(path))
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .header("origin", origin)
            .header("cookie", self.cookie_header())
            .form(fields)
            .send()
            .await
            .expect("a response");
        self.read(response).await
    }

    /// Fills in the form of the page at `form_path` with its token and posts it to `action`.
    pub async fn submit(&mut self, form_path: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.get(form_path).await.token();
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.post(action, &all).await
    }

    /// Signs up through the page (with the tests' password), asserting the 303.
    pub async fn sign_up(&mut self, email: &str, name: &str) -> Page {
        let page = self
            .submit(
                "/signup",
                "/signup",
                &[
                    ("email", email),
                    ("name", name),
                    ("password", crate::accounts_support::PASSWORD),
                ],
            )
            .await;
        assert_eq!(page.status, 303, "{}", page.body);
        page
    }

    /// Shortens `url` (with `fields` besides) through the home page; the response.
    pub async fn shorten(&mut self, url: &str, fields: &[(&str, &str)]) -> Page {
        let mut all = vec![("url", url)];
        all.extend_from_slice(fields);
        self.submit("/", "/", &all).await
    }
}

impl Browser<'_> {
    /// Posts `body` of `content_type` from our own origin, with `headers` besides (a
    /// multipart upload, or a form from a named browser).
    pub async fn post_raw(
        &mut self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Page {
        let mut request = self
            .app
            .client
            .post(self.app.url(path))
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .header("origin", self.app.url(""))
            .header("cookie", self.cookie_header())
            .header("content-type", content_type)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("a response");
        self.read(response).await
    }

    /// Signs in through the page from a browser that calls itself `agent`; the response.
    pub async fn sign_in_as(&mut self, email: &str, password: &str, agent: &str) -> Page {
        let token = self.get("/signin").await.token();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("csrf", &token)
            .append_pair("email", email)
            .append_pair("password", password)
            .finish();
        self.post_raw(
            "/signin",
            "application/x-www-form-urlencoded",
            body.into_bytes(),
            &[("user-agent", agent)],
        )
        .await
    }
}

/// A `multipart/form-data` body of text `fields` and one file; its content type.
pub fn multipart(fields: &[(&str, &str)], file: (&str, &str, &[u8])) -> (String, Vec<u8>) {
    const BOUNDARY: &str = "basis-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    let (name, filename, bytes) = file;
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}
