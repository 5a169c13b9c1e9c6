//! A visitor with a cookie jar, who fills in forms as a browser does:
//! reads the form's token from the page and sends the site's Origin.

use std::collections::BTreeMap;

use crate::helpers::TestApp;

pub struct Visitor<'a> {
    app: &'a TestApp,
    pub cookies: BTreeMap<String, String>,
    /// Sent with every request (a proxy's country header, say).
    pub headers: Vec<(String, String)>,
}

/// A response, read whole.
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    /// The value of the first `csrf_token` field on the page.
    pub fn csrf_token(&self) -> String {
        form_field(&self.body, "csrf_token").expect("the page has a form with a csrf_token")
    }
}

pub fn form_field(body: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker)? + marker.len();
    let end = body[start..].find('"')?;
    Some(body[start..start + end].to_owned())
}

impl<'a> Visitor<'a> {
    pub fn new(app: &'a TestApp) -> Visitor<'a> {
        Visitor {
            app,
            cookies: BTreeMap::new(),
            headers: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn read(&mut self, response: reqwest::Response) -> Page {
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let removed = value.is_empty() || set.contains("Max-Age=0");
            if removed {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Page {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    fn with_headers(&self, mut request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let request = self
            .app
            .client
            .get(self.app.url(path))
            .header("cookie", self.cookie_header());
        let response = self.with_headers(request).send().await.unwrap();
        self.read(response).await
    }

    /// Posts `fields` as a form from this site, with whatever token the caller put in.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let request = self
            .app
            .client
            .post(self.app.url(path))
            .header("cookie", self.cookie_header())
            .header("origin", &self.app.address)
            .form(fields);
        let response = self.with_headers(request).send().await.unwrap();
        self.read(response).await
    }

    /// Opens the form at `form_path`, then submits it to `action` with its token.
    pub async fn submit(&mut self, form_path: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let form = self.get(form_path).await;
        assert_eq!(form.status, 200, "the form at {form_path} opens: {}", form.body);
        let token = form.csrf_token();
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf_token", &token));
        self.post(action, &all).await
    }

    /// Submits the login form.
    pub async fn log_in(&mut self, email: &str, password: &str) -> Page {
        self.submit("/login", "/login", &[("email", email), ("password", password)])
            .await
    }

    /// Posts `fields` with the token this visitor's forms carry now
    /// (to resend a form whose page can no longer be opened).
    pub async fn post_with_token(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.get("/signup").await.csrf_token();
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf_token", &token));
        self.post(path, &all).await
    }

    pub fn is_logged_in(&self) -> bool {
        self.cookies.contains_key("lectern_session")
    }

    /// `/me`'s user, or null.
    pub async fn me(&mut self) -> serde_json::Value {
        let page = self.get("/me").await;
        assert_eq!(page.status, 200);
        serde_json::from_str::<serde_json::Value>(&page.body).unwrap()["user"].clone()
    }
}
