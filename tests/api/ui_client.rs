//! An HTTP client acting as a browser for the web UI's tests: the session cookie, forms
//! encoded as browsers do, and the hidden fields (CSRF token, version) of a page.

use crate::helpers::TestApp;
use reqwest::{Response, StatusCode};

/// A browser as far as the tests need one: the session cookie and the page's CSRF token.
pub struct Browser<'a> {
    pub app: &'a TestApp,
    /// Where requests go: the app's address, or another replica's (see [`Browser::on`]).
    pub address: String,
    pub cookie: String,
}

pub const FORM: &str = "application/x-www-form-urlencoded";

/// A form body as a browser encodes it.
pub fn encode(form: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish()
}

pub fn set_cookies(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

pub fn cookie_value(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap()
}

pub fn location(response: &Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// The value of the first hidden `name` field of a page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

impl<'a> Browser<'a> {
    /// Signs in through the form, as a browser does.
    pub async fn sign_in(app: &'a TestApp, email: &str, password: &str) -> Self {
        let (response, _) = Self::post_login(app, email, password).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "sign-in of {email}");
        let session = set_cookies(&response)
            .into_iter()
            .find(|c| c.starts_with("gmp_session="))
            .expect("a session cookie");
        Self {
            app,
            address: app.address.clone(),
            cookie: cookie_value(&session).to_owned(),
        }
    }

    /// The same browser session, sending its requests to the replica at `address`.
    pub fn on(&self, address: &str) -> Self {
        Self {
            app: self.app,
            address: address.to_owned(),
            cookie: self.cookie.clone(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_login(app: &TestApp, email: &str, password: &str) -> (Response, Vec<String>) {
        let form = app.client.get(app.url("/login")).send().await.unwrap();
        let cookies = set_cookies(&form);
        let login_cookie =
            cookie_value(cookies.iter().find(|c| c.starts_with("gmp_login=")).unwrap()).to_owned();
        let csrf = hidden(&form.text().await.unwrap(), "csrf");
        let response = app
            .client
            .post(app.url("/login"))
            .header("cookie", login_cookie)
            .header("content-type", FORM)
            .body(encode(&[
                ("csrf", csrf.as_str()),
                ("email", email),
                ("password", password),
            ]))
            .send()
            .await
            .unwrap();
        (response, cookies)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.app
            .client
            .get(self.url(path))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }

    pub async fn page(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.text().await.unwrap()
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.app
            .client
            .post(self.url(path))
            .header("cookie", &self.cookie)
            .header("content-type", FORM)
            .body(encode(form))
            .send()
            .await
            .unwrap()
    }
}
