//! The ConnectWise Manage REST client: codebase discovery, Basic auth with the integration's
//! `clientId`, a pinned API version, paging through `Link: rel="next"`, bounded retries, a
//! bound on what one request may hold in memory, and errors an operator can act on.

use super::guard::{DnsFailure, GuardedResolver, OutboundPolicy, Refusal};
use super::size::{Meter, ParseError, item_size, parse_metered};
use crate::cache::{BoundedCache, Bounds};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::{StatusCode, header};
use serde_json::Value;
use std::fmt;
use std::sync::{Arc, Once};
use std::time::Duration;

/// The API version pinned in `Accept` (the version of the reference spec).
pub const API_VERSION: &str = "2025.8";
/// Used when the codebase lookup fails: the usual codebase of ConnectWise cloud sites.
pub const FALLBACK_CODEBASE: &str = "v4_6_release/";
const CODEBASE_TTL: Duration = Duration::from_secs(3600);
/// The codebase answer is a few fields; anything larger is not a ConnectWise answer.
const CODEBASE_ANSWER_BYTES: usize = 64 * 1024;
/// Codebases cached for all sites together (a few thousand sites), in estimated bytes.
pub const CODEBASE_CACHE_BYTES: usize = 1024 * 1024;
const MAX_ATTEMPTS: u32 = 3;

/// ConnectWise API credentials. `Debug` never shows the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Normalised `host[:port]`.
    pub site: String,
    pub company_id: String,
    pub public_key: String,
    pub private_key: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("site", &self.site)
            .field("company_id", &self.company_id)
            .field("public_key", &self.public_key)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

impl Credentials {
    fn basic_auth(&self) -> String {
        let raw = format!("{}+{}:{}", self.company_id, self.public_key, self.private_key);
        format!("Basic {}", BASE64.encode(raw))
    }

    /// Identifies these credentials without revealing them (cache keys).
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(self.site.as_bytes())
            .chain_update([0])
            .chain_update(self.company_id.as_bytes())
            .chain_update([0])
            .chain_update(self.public_key.as_bytes())
            .chain_update([0])
            .chain_update(self.private_key.as_bytes())
            .finalize();
        hex::encode(&digest[..16])
    }
}

/// Why a call failed, in terms an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CwError {
    /// The SSRF guard refused the address; nothing was sent.
    Refused(String),
    InvalidCredentials,
    InsufficientPermissions,
    UnknownSiteOrCompany(String),
    /// The site's name does not resolve from the GMP server (the host).
    Dns(String),
    /// No connection could be opened: the GMP server's network, a firewall, or nothing
    /// listening (what the operating system said).
    NetworkUnreachable(String),
    Timeout,
    Tls(String),
    RateLimited(Option<u64>),
    /// The answer would take more memory than one request may use (the limit in bytes).
    TooLarge(usize),
    Unexpected(String),
}

impl CwError {
    /// The stable `reason` of a failed Test Connection.
    pub fn reason(&self) -> &'static str {
        match self {
            CwError::Refused(_) => "refused_address",
            CwError::InvalidCredentials => "invalid_credentials",
            CwError::InsufficientPermissions => "insufficient_permissions",
            CwError::UnknownSiteOrCompany(_) => "unknown_site_or_company",
            CwError::Dns(_) => "dns_error",
            CwError::NetworkUnreachable(_) => "network_unreachable",
            CwError::Timeout => "timeout",
            CwError::Tls(_) => "tls_error",
            CwError::RateLimited(_) => "rate_limited",
            CwError::TooLarge(_) | CwError::Unexpected(_) => "unexpected_response",
        }
    }

    /// A sentence for the operator.
    pub fn sentence(&self) -> String {
        match self {
            CwError::Refused(why) => format!("{why}. Use your public ConnectWise site."),
            CwError::InvalidCredentials => {
                "ConnectWise rejected the credentials: check the company, API key and API secret.".into()
            }
            CwError::InsufficientPermissions => {
                "The API member lacks permissions: give its security role access to companies, agreements, service boards and tickets.".into()
            }
            CwError::UnknownSiteOrCompany(detail) => {
                format!("ConnectWise does not know this site or company ({detail}): check the site address and company id.")
            }
            CwError::Dns(host) => format!(
                "The GMP server could not look up `{host}` in DNS: check the site address; if it is right, \
                 check the DNS settings of the GMP server's network (the resolver's error is in the server log)."
            ),
            CwError::NetworkUnreachable(why) => format!(
                "The GMP server could not open a connection to the site ({why}): check the GMP server's \
                 network connection, firewall and outbound proxy rules, then the site address."
            ),
            CwError::Timeout => "ConnectWise did not answer in time: check the site address, or try again later.".into(),
            CwError::Tls(detail) => format!("The secure connection to the site failed ({detail}): check the site address."),
            CwError::RateLimited(Some(wait)) => format!("ConnectWise is rate limiting; try again in {wait} seconds."),
            CwError::RateLimited(None) => "ConnectWise is rate limiting; try again shortly.".into(),
            CwError::TooLarge(limit) => format!(
                "ConnectWise's answer is larger than the {} MiB one request may use: narrow the search, or check the site address.",
                limit.div_ceil(1024 * 1024)
            ),
            CwError::Unexpected(detail) => format!("ConnectWise answered unexpectedly ({detail}); try again or contact support."),
        }
    }
}

impl fmt::Display for CwError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sentence())
    }
}

/// How the client behaves; every limit is configuration.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub client_id: String,
    pub policy: OutboundPolicy,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub page_size: u32,
    pub max_pages: u32,
    /// The longest `Retry-After` waited out before giving up.
    pub max_retry_wait: Duration,
    /// First backoff after a 5xx or a timeout; doubles each retry.
    pub backoff: Duration,
    /// One answer (one page), counted while it streams in.
    pub max_body_bytes: usize,
    /// What one request may hold at any time across all its pages, in estimated bytes: the
    /// answer being read, its parsed form, and the records kept from earlier pages.
    pub max_request_bytes: usize,
}

/// Turns each record of a list into what the caller keeps of it, page by page, so a whole
/// list of full records is never held at once.
pub type Keep<'a> = &'a (dyn Fn(&Value) -> Value + Sync);

/// Values in conditions are quoted strings; quotes and backslashes inside are escaped, so a
/// search term can never end the string and add conditions of its own.
pub fn quote_condition_value(raw: &str) -> String {
    let cleaned: String = raw.chars().filter(|c| !c.is_control()).collect();
    format!("\"{}\"", cleaned.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(header_value: &str) -> Option<String> {
    header_value.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            p.trim().eq_ignore_ascii_case("rel=\"next\"") || p.trim().eq_ignore_ascii_case("rel=next")
        });
        is_next.then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

/// Selects ring as rustls's crypto provider for this process (reqwest is built without one, to
/// keep the C/CMake-heavy default out of the build). Every outbound HTTP client calls this first.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Another part of the process may have installed one already; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub struct ConnectWiseClient {
    http: reqwest::Client,
    settings: ClientSettings,
    codebases: BoundedCache<String, String>,
}

impl fmt::Debug for ConnectWiseClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectWiseClient")
            .field("settings", &self.settings)
            .finish()
    }
}

impl ConnectWiseClient {
    pub fn new(settings: ClientSettings) -> Result<Self, reqwest::Error> {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: Arc::new(settings.policy.clone()),
            }))
            // A redirect could point anywhere; ConnectWise's API does not need them.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .user_agent(concat!("gmp-server/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            settings,
            codebases: BoundedCache::new(Bounds {
                ttl: CODEBASE_TTL,
                max_bytes: CODEBASE_CACHE_BYTES,
                max_entry_bytes: 4096,
            }),
        })
    }

    /// `scheme://host[:port]`, serialised from the URL the guard checked, so the client parses
    /// back the very host that was judged.
    fn origin(&self, site: &str) -> Result<String, CwError> {
        let url = self
            .settings
            .policy
            .origin(site)
            .map_err(|r| CwError::Refused(r.to_string()))?;
        Ok(url[..url::Position::BeforePath].to_owned())
    }

    /// The site's codebase (`v2025_1/`), looked up once per site and company and cached; the
    /// usual cloud codebase when the lookup fails.
    async fn codebase(&self, credentials: &Credentials) -> Result<String, CwError> {
        let key = format!(
            "{}|{}",
            credentials.site,
            credentials.company_id.to_ascii_lowercase()
        );
        if let Some(codebase) = self.codebases.get(&key) {
            return Ok(codebase);
        }
        let url = format!(
            "{}/login/companyinfo/{}",
            self.origin(&credentials.site)?,
            credentials.company_id
        );
        let found = match self
            .http
            .get(&url)
            .header("clientId", &self.settings.client_id)
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => {
                let mut meter = Meter::new(CODEBASE_ANSWER_BYTES);
                self.read_body(response, &mut meter)
                    .await
                    .ok()
                    .and_then(|body| parse_metered(&body, &mut meter).ok())
                    .and_then(|v| v.get("Codebase").and_then(Value::as_str).map(str::to_owned))
                    .filter(|c| {
                        c.ends_with('/')
                            && c.len() <= 64
                            && c.trim_end_matches('/')
                                .chars()
                                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '.')
                    })
            }
            Ok(_) => None,
            Err(error) => {
                if let CwError::Refused(why) = classify(&error) {
                    return Err(CwError::Refused(why));
                }
                None
            }
        };
        let codebase = found.unwrap_or_else(|| FALLBACK_CODEBASE.to_owned());
        let size = codebase.len();
        self.codebases.put(key, codebase.clone(), size);
        Ok(codebase)
    }

    async fn base_url(&self, credentials: &Credentials) -> Result<String, CwError> {
        let codebase = self.codebase(credentials).await?;
        Ok(format!("{}/{codebase}apis/3.0", self.origin(&credentials.site)?))
    }

    /// One GET with retries: `429` waits out `Retry-After` (bounded), `5xx` and timeouts back
    /// off and retry, other `4xx` fail at once. Returns the JSON body, the next-page link, and
    /// what the parsed body was charged to `meter` (the caller refunds it once dropped).
    async fn get(
        &self,
        credentials: &Credentials,
        url: &str,
        meter: &mut Meter,
    ) -> Result<(Value, Option<String>, usize), CwError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= MAX_ATTEMPTS;
            let sent = self
                .http
                .get(url)
                .header(header::AUTHORIZATION, credentials.basic_auth())
                .header("clientId", &self.settings.client_id)
                .header(
                    header::ACCEPT,
                    format!("application/vnd.connectwise.com+json; version={API_VERSION}"),
                )
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(error) => {
                    let classified = classify(&error);
                    if matches!(classified, CwError::Timeout | CwError::Unexpected(_)) && !last {
                        tokio::time::sleep(self.settings.backoff * 2u32.pow(attempt - 1)).await;
                        continue;
                    }
                    return Err(classified);
                }
            };
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                let wait = response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                let delay = Duration::from_secs(wait.unwrap_or(1));
                if last || delay > self.settings.max_retry_wait {
                    return Err(CwError::RateLimited(wait));
                }
                tokio::time::sleep(delay).await;
                continue;
            }
            if status.is_server_error() {
                if last {
                    return Err(CwError::Unexpected(format!("HTTP {status}")));
                }
                tokio::time::sleep(self.settings.backoff * 2u32.pow(attempt - 1)).await;
                continue;
            }
            let next = response
                .headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let body = self.read_body(response, meter).await?;
            if !status.is_success() {
                return Err(match status {
                    StatusCode::UNAUTHORIZED => CwError::InvalidCredentials,
                    StatusCode::FORBIDDEN => CwError::InsufficientPermissions,
                    StatusCode::NOT_FOUND => CwError::UnknownSiteOrCompany("HTTP 404".into()),
                    _ if String::from_utf8_lossy(&body).contains("Cannot route") => {
                        CwError::UnknownSiteOrCompany("codebase or company is invalid".into())
                    }
                    other => CwError::Unexpected(format!("HTTP {other}")),
                });
            }
            let before = meter.used();
            let parsed = parse_metered(&body, meter);
            let parsed_size = meter.used() - before;
            // The raw body is dropped now; its parsed form stays charged until the caller is done.
            meter.refund(body.len());
            drop(body);
            let json = parsed.map_err(|error| match error {
                ParseError::TooLarge => CwError::TooLarge(meter.limit()),
                ParseError::NotJson => CwError::Unexpected("the body is not JSON".into()),
            })?;
            return Ok((json, next, parsed_size));
        }
    }

    /// The body, counted against the one-answer bound and `meter` while it streams in, so an
    /// oversize answer is cut off, not buffered.
    async fn read_body(
        &self,
        mut response: reqwest::Response,
        meter: &mut Meter,
    ) -> Result<Vec<u8>, CwError> {
        let limit = self.settings.max_body_bytes;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e))? {
            if body.len() + chunk.len() > limit {
                meter.refund(body.len());
                return Err(CwError::TooLarge(limit));
            }
            if !meter.charge(chunk.len()) {
                return Err(CwError::TooLarge(meter.limit()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Every record of a list endpoint, following `Link: rel="next"` up to the page cap, each
    /// reduced by `keep` as its page arrives. What the request holds is metered throughout.
    async fn get_all(
        &self,
        credentials: &Credentials,
        path: &str,
        query: &[(&str, String)],
        keep: Keep<'_>,
    ) -> Result<Vec<Value>, CwError> {
        let base = self.base_url(credentials).await?;
        let mut url =
            reqwest::Url::parse(&format!("{base}{path}")).map_err(|e| CwError::Unexpected(e.to_string()))?;
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())))
            .append_pair("page", "1")
            .append_pair("pageSize", &self.settings.page_size.to_string());
        let origin = url.origin();
        let mut meter = Meter::new(self.settings.max_request_bytes);
        let mut items = Vec::new();
        let mut next = Some(url.to_string());
        let mut pages = 0;
        while let Some(current) = next.take() {
            pages += 1;
            let (page, link, parsed_size) = self.get(credentials, &current, &mut meter).await?;
            let Value::Array(records) = page else {
                return Err(CwError::Unexpected("a list was not a JSON array".into()));
            };
            for record in &records {
                let kept = keep(record);
                if !meter.charge(item_size(&kept)) {
                    return Err(CwError::TooLarge(meter.limit()));
                }
                items.push(kept);
            }
            drop(records);
            meter.refund(parsed_size);
            next = match link.map(|l| reqwest::Url::parse(&l)) {
                Some(Ok(link)) if link.origin() == origin => Some(link.to_string()),
                Some(_) => return Err(CwError::Unexpected("a next-page link points elsewhere".into())),
                None => None,
            };
            if next.is_some() && pages >= self.settings.max_pages {
                tracing::warn!(path, pages, "stopped paging at the page cap");
                break;
            }
        }
        Ok(items)
    }

    /// `GET /system/info`: the credential check behind Test Connection.
    pub async fn system_info(&self, credentials: &Credentials) -> Result<Value, CwError> {
        let url = format!("{}/system/info", self.base_url(credentials).await?);
        let mut meter = Meter::new(self.settings.max_request_bytes);
        self.get(credentials, &url, &mut meter)
            .await
            .map(|(info, _, _)| info)
    }

    pub async fn companies(
        &self,
        credentials: &Credentials,
        search: Option<&str>,
        keep: Keep<'_>,
    ) -> Result<Vec<Value>, CwError> {
        let mut conditions = "deletedFlag=false".to_owned();
        if let Some(term) = search.filter(|t| !t.trim().is_empty()) {
            conditions.push_str(&format!(
                " and name like {}",
                quote_condition_value(&format!("%{}%", term.trim()))
            ));
        }
        let query = [("conditions", conditions), ("orderBy", "name asc".to_owned())];
        self.get_all(credentials, "/company/companies", &query, keep)
            .await
    }

    /// The company with this id: one record, or none.
    pub async fn company(
        &self,
        credentials: &Credentials,
        id: i64,
        keep: Keep<'_>,
    ) -> Result<Vec<Value>, CwError> {
        let query = [("conditions", format!("id={id}"))];
        self.get_all(credentials, "/company/companies", &query, keep)
            .await
    }

    pub async fn agreements(
        &self,
        credentials: &Credentials,
        company_id: i64,
        keep: Keep<'_>,
    ) -> Result<Vec<Value>, CwError> {
        let query = [
            ("conditions", format!("company/id={company_id}")),
            ("orderBy", "name asc".to_owned()),
        ];
        self.get_all(credentials, "/finance/agreements", &query, keep)
            .await
    }

    pub async fn additions(
        &self,
        credentials: &Credentials,
        agreement_id: i64,
        keep: Keep<'_>,
    ) -> Result<Vec<Value>, CwError> {
        self.get_all(
            credentials,
            &format!("/finance/agreements/{agreement_id}/additions"),
            &[],
            keep,
        )
        .await
    }

    pub async fn boards(&self, credentials: &Credentials, keep: Keep<'_>) -> Result<Vec<Value>, CwError> {
        self.get_all(
            credentials,
            "/service/boards",
            &[("orderBy", "name asc".to_owned())],
            keep,
        )
        .await
    }

    pub async fn statuses(
        &self,
        credentials: &Credentials,
        board_id: i64,
        keep: Keep<'_>,
    ) -> Result<Vec<Value>, CwError> {
        let query = [("orderBy", "sortOrder asc".to_owned())];
        self.get_all(
            credentials,
            &format!("/service/boards/{board_id}/statuses"),
            &query,
            keep,
        )
        .await
    }
}

/// What the operating system said about a failed connection, in words.
fn connect_failure(error: &reqwest::Error) -> String {
    use std::io::ErrorKind;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                ErrorKind::ConnectionRefused => "connection refused",
                ErrorKind::NetworkUnreachable => "network unreachable",
                ErrorKind::HostUnreachable => "host unreachable",
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => "connection reset",
                ErrorKind::AddrNotAvailable => "no route from this server",
                _ => "the connection failed",
            }
            .to_owned();
        }
        source = current.source();
    }
    "the connection failed".to_owned()
}

/// Sorts a transport error into what the operator can do about it.
fn classify(error: &reqwest::Error) -> CwError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(refusal) = current.downcast_ref::<Refusal>() {
            return CwError::Refused(refusal.to_string());
        }
        if let Some(failure) = current.downcast_ref::<DnsFailure>() {
            return CwError::Dns(failure.0.clone());
        }
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return CwError::Tls(tls.to_string());
        }
        // TLS failures arrive as I/O errors wrapping I/O errors wrapping the rustls error.
        let mut io = current.downcast_ref::<std::io::Error>();
        while let Some(inner) = io.and_then(std::io::Error::get_ref) {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return CwError::Tls(tls.to_string());
            }
            io = inner.downcast_ref::<std::io::Error>();
        }
        source = current.source();
    }
    if error.is_timeout() {
        CwError::Timeout
    } else if error.is_connect() {
        tracing::warn!(error = %error, "cannot connect to a ConnectWise site");
        CwError::NetworkUnreachable(connect_failure(error))
    } else {
        CwError::Unexpected("the connection failed".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_values_cannot_escape_their_quotes() {
        assert_eq!(quote_condition_value("Acme"), "\"Acme\"");
        assert_eq!(
            quote_condition_value("a\" or id>0 or name=\"x"),
            "\"a\\\" or id>0 or name=\\\"x\""
        );
        assert_eq!(quote_condition_value("back\\slash"), "\"back\\\\slash\"");
        assert_eq!(quote_condition_value("new\nline"), "\"newline\"");
    }

    #[test]
    fn the_next_link_is_found_among_others() {
        let header = r#"<https://x/company/companies?page=1>; rel="first", <https://x/company/companies?pageSize=2&page=2>; rel="next", <https://x/company/companies?page=9>; rel="last""#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://x/company/companies?pageSize=2&page=2")
        );
        assert_eq!(next_link(r#"<https://x/a?page=9>; rel="last""#), None);
    }

    #[test]
    fn credentials_never_show_the_private_key() {
        let credentials = Credentials {
            site: "na.myconnectwise.net".into(),
            company_id: "acme".into(),
            public_key: "pub".into(),
            private_key: "very-secret".into(),
        };
        assert!(!format!("{credentials:?}").contains("very-secret"));
        assert!(!credentials.fingerprint().contains("very-secret"));
        assert_eq!(
            credentials.basic_auth(),
            format!("Basic {}", BASE64.encode("acme+pub:very-secret"))
        );
    }
}
