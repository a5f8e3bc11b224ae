//! Who may do what over HTTP: the request checks every route passes, the
//! session extractors the handlers ask for, and login, logout and `me`.
//!
//! Invariants:
//! - Every response carries a Content-Security-Policy with
//!   `frame-ancestors 'none'` and `X-Content-Type-Options: nosniff`; the
//!   page's own scripts run by a per-response nonce, nothing else does.
//! - A request whose `Host` is a name not listed in `http.allowed_hosts`
//!   (an IP address or `localhost` always passes) is refused with 400
//!   before any handler runs: a DNS-rebinding page cannot reach the API
//!   under its own name.
//! - A POST whose `Origin` is not this very host (or that a browser marks
//!   `Sec-Fetch-Site: cross-site`) is refused with 403. Clients that send
//!   no `Origin` (scripts, `riskgate ack`) pass to the session check.
//! - Writes need a session (cookie `riskgate_session` or `Authorization:
//!   Bearer`); acknowledging needs the `operator` role. Reads need a session
//!   unless `http.public_read`, or unless the gateway has no users and
//!   listens on loopback only (then only local processes can reach it, as
//!   before accounts existed).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::error;
use crate::auth::{Accounts, LoginError, Role, User};
use crate::config::HttpServer;

/// The session cookie.
pub const COOKIE: &str = "riskgate_session";

/// Argon2 verifications at once (each takes ~19 MiB and tens of ms): a
/// burst of logins cannot take the gateway's memory or both cores.
const LOGINS_AT_ONCE: usize = 2;

/// The access rules of one gateway, shared by every request.
pub struct Guard {
    pub accounts: Accounts,
    public_read: bool,
    loopback_only: bool,
    allowed_hosts: Vec<String>,
    cookie_max_age: u64,
    logins: tokio::sync::Semaphore,
}

impl Guard {
    pub fn new(http: &HttpServer) -> Guard {
        Guard {
            accounts: Accounts::new(&http.users_file, http.session_idle, http.session_max),
            public_read: http.public_read,
            loopback_only: http.listen.ip().is_loopback(),
            allowed_hosts: http
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            cookie_max_age: http.session_max.as_secs(),
            logins: tokio::sync::Semaphore::new(LOGINS_AT_ONCE),
        }
    }

    /// Reads need no session (see the module doc).
    fn reads_open(&self) -> bool {
        self.public_read || (self.loopback_only && !self.accounts.configured())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        // An IP literal cannot be rebound; `localhost` resolves locally.
        let name = match host.strip_prefix('[') {
            Some(v6) => return v6.split_once(']').is_some(),
            None => host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h),
        };
        name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || self
                .allowed_hosts
                .iter()
                .any(|a| *a == host || (!a.contains(':') && a == name))
    }
}

/// The per-response nonce of the page's scripts.
#[derive(Clone)]
pub struct Nonce(pub String);

/// Host and Origin checks before the handler, security headers after.
pub async fn check(
    Extension(guard): Extension<Arc<Guard>>,
    mut req: Request,
    next: Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let mut resp = match host {
        None => error(StatusCode::BAD_REQUEST, "a Host header is needed"),
        Some(h) if !guard.host_allowed(&h) => {
            tracing::warn!(host = %h, "request with a host name not in http.allowed_hosts refused");
            error(
                StatusCode::BAD_REQUEST,
                format!("host `{h}` is not served here (http.allowed_hosts)"),
            )
        }
        Some(h)
            if req.method() != Method::GET
                && req.method() != Method::HEAD
                && cross_site(req.headers(), &h) =>
        {
            tracing::warn!(host = %h, origin = ?req.headers().get(header::ORIGIN), path = %req.uri().path(), "cross-site request refused");
            error(StatusCode::FORBIDDEN, "cross-site requests are refused")
        }
        Some(_) => {
            let nonce = Nonce(random_hex(16));
            req.extensions_mut().insert(nonce.clone());
            let mut resp = next.run(req).await;
            let is_page = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|c| c.as_bytes().starts_with(b"text/html"));
            let csp = if is_page {
                format!(
                    "default-src 'self'; script-src 'nonce-{}'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; media-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
                    nonce.0
                )
            } else {
                "default-src 'none'; frame-ancestors 'none'".to_string()
            };
            if let Ok(v) = HeaderValue::from_str(&csp) {
                resp.headers_mut()
                    .insert(header::CONTENT_SECURITY_POLICY, v);
            }
            return with_headers(resp);
        }
    };
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    resp = with_headers(resp);
    resp
}

fn with_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Alarm states and sessions: never from a cache.
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// True when a browser tells us the request comes from another site.
fn cross_site(h: &HeaderMap, host: &str) -> bool {
    if h.get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return true;
    }
    match h.get(header::ORIGIN).map(|o| o.to_str()) {
        None => false,
        Some(Ok(o)) => {
            let o = o.to_ascii_lowercase();
            let host = host.to_ascii_lowercase();
            o != format!("http://{host}") && o != format!("https://{host}")
        }
        Some(Err(_)) => true,
    }
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::fill(&mut b[..]);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The token a request carries: `Authorization: Bearer` first, else the
/// cookie.
fn token(h: &HeaderMap) -> Option<String> {
    if let Some(t) = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(t.trim().to_string());
    }
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            kv.trim()
                .strip_prefix(COOKIE)
                .and_then(|r| r.strip_prefix('='))
        })
        .map(str::to_string)
}

/// A refused request: `{"error": ...}` with its status, small enough to
/// pass around in a `Result`.
pub struct Refusal(pub StatusCode, pub String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn guard_of(parts: &Parts) -> Result<Arc<Guard>, Refusal> {
    parts
        .extensions
        .get::<Arc<Guard>>()
        .cloned()
        .ok_or_else(|| {
            Refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the API was built without its access rules".into(),
            )
        })
}

/// The client's address (unspecified when the server did not say).
pub fn peer(parts_ext: &axum::http::Extensions) -> IpAddr {
    parts_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

fn unauthorized() -> Refusal {
    Refusal(StatusCode::UNAUTHORIZED, "login required".into())
}

/// Any logged-in user.
pub struct Session(pub User);

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Refusal;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Refusal> {
        let g = guard_of(parts)?;
        token(&parts.headers)
            .and_then(|t| g.accounts.user_of(&t))
            .map(Session)
            .ok_or_else(unauthorized)
    }
}

/// A logged-in operator, and the client's address (for the audit log).
pub struct Operator {
    pub user: User,
    pub from: IpAddr,
}

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = Refusal;
    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, Refusal> {
        let Session(user) = Session::from_request_parts(parts, s).await?;
        if user.role != Role::Operator {
            return Err(Refusal(
                StatusCode::FORBIDDEN,
                format!(
                    "`{}` is a viewer; acknowledging needs the operator role",
                    user.name
                ),
            ));
        }
        Ok(Operator {
            user,
            from: peer(&parts.extensions),
        })
    }
}

/// May read: a session, or reads open (see the module doc).
pub struct Reader;

impl<S: Send + Sync> FromRequestParts<S> for Reader {
    type Rejection = Refusal;
    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, Refusal> {
        let g = guard_of(parts)?;
        if g.reads_open() {
            return Ok(Reader);
        }
        Session::from_request_parts(parts, s).await.map(|_| Reader)
    }
}

/// A [`Reader`] whose answer lasts (the event stream): it keeps the session
/// it was let in with, so that the answer can end when the session does
/// (logout, expiry, the user removed or their password changed).
pub struct LastingReader {
    guard: Arc<Guard>,
    token: Option<String>,
}

impl LastingReader {
    /// May this reader still read? Asked again while the answer lasts; it
    /// does not count as a use of the session (`Accounts::still_valid`).
    pub fn still_allowed(&self) -> bool {
        self.guard.reads_open()
            || self
                .token
                .as_deref()
                .is_some_and(|t| self.guard.accounts.still_valid(t))
    }

    /// A reader under `http`'s rules without a session (unit tests).
    #[cfg(test)]
    pub(crate) fn anonymous(http: &HttpServer) -> LastingReader {
        LastingReader {
            guard: Arc::new(Guard::new(http)),
            token: None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for LastingReader {
    type Rejection = Refusal;
    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, Refusal> {
        Reader::from_request_parts(parts, s).await?;
        Ok(LastingReader {
            guard: guard_of(parts)?,
            token: token(&parts.headers),
        })
    }
}

/// A JSON body of `T`, or 400/415 with `{"error"}` saying what is wrong.
pub fn json_body<T: serde::de::DeserializeOwned>(
    h: &HeaderMap,
    body: &Bytes,
) -> Result<T, Refusal> {
    let is_json = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !is_json {
        return Err(Refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/json".into(),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| Refusal(StatusCode::BAD_REQUEST, format!("bad body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    name: String,
    password: String,
}

fn user_json(u: &User) -> serde_json::Value {
    json!({"name": u.name, "display_name": u.shown(), "role": u.role.as_str()})
}

/// `POST /api/login`.
pub async fn login(Extension(g): Extension<Arc<Guard>>, req: Request) -> Response {
    let from = peer(req.extensions());
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, super::MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad body: {e}")),
    };
    let b: LoginBody = match json_body(&parts.headers, &body) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let Ok(_permit) = g.logins.acquire().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the gateway is stopping");
    };
    let g2 = g.clone();
    let name = b.name.clone();
    let r =
        tokio::task::spawn_blocking(move || g2.accounts.login(&b.name, &b.password, from)).await;
    let m = crate::metrics::metrics();
    match r {
        Ok(Ok((user, token))) => {
            tracing::info!(user = %user.name, %from, "login");
            let cookie = format!(
                "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                g.cookie_max_age
            );
            let mut body = user_json(&user);
            body["token"] = json!(token);
            let mut resp = Json(body).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Ok(Err(e)) => {
            let reason = match e {
                LoginError::Refused => "refused",
                LoginError::Locked(_) => "locked",
                LoginError::Broken(_) => "users_file",
            };
            m.login_failures.with_label_values(&[reason]).inc();
            tracing::warn!(user = %name.chars().take(64).collect::<String>(), %from, error = %e, "login failed");
            match e {
                LoginError::Locked(left) => {
                    let mut r = error(StatusCode::TOO_MANY_REQUESTS, e);
                    if let Ok(v) = HeaderValue::from_str(&left.as_secs().max(1).to_string()) {
                        r.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                    r
                }
                _ => error(StatusCode::UNAUTHORIZED, e),
            }
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// `POST /api/logout`: the session ends, the cookie is cleared (204 also
/// without a session, so a page can always log out).
pub async fn logout(Extension(g): Extension<Arc<Guard>>, headers: HeaderMap) -> Response {
    if let Some(t) = token(&headers) {
        g.accounts.sessions.close(&t);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("riskgate_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    resp
}

/// `GET /api/me`.
pub async fn me(Session(u): Session) -> Response {
    Json(user_json(&u)).into_response()
}
