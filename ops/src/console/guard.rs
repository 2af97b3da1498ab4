//! Who may use the console, checked before any handler runs ([`check`]) and again by
//! every change ([`Guard::check_change`]).
//!
//! - **User**: a loopback console serves only the user who started it (`peer.rs`): not
//!   another user of the same machine.
//! - **Host**: a loopback console answers only requests addressed to its own loopback
//!   address or `localhost`, so a web page on another site cannot reach it through a
//!   name it re-points at 127.0.0.1 (DNS rebinding).
//! - **Access token**: a console on another address (`--allow-remote`) makes a random
//!   token at start and refuses every request that carries it neither in the URL
//!   (`?token=`; the browser is then redirected to the same page without it and keeps it
//!   in an `HttpOnly`, `SameSite=Strict` cookie) nor in that cookie.
//! - **CSRF**: every change needs this start's CSRF token, which only the console's own
//!   pages hold (`<meta name="csrf-token">`), in the `X-CSRF-Token` header or the form's
//!   `csrf` field; a request another site's page sends (`Origin` or `Sec-Fetch-Site`
//!   saying so) is refused even with it.
//! - **Headers**: a strict content security policy (scripts, styles and connections to
//!   the console itself only), no framing, no referrer (the URL may hold the token), no
//!   caching.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

use super::{Shared, browsable, html, peer};
use crate::exit::{Error, Exit};

/// The cookie that holds the access token.
const ACCESS_COOKIE: &str = "killswitch_console";

/// The header that carries the CSRF token.
pub(super) const CSRF_HEADER: &str = "x-csrf-token";

/// The content security policy of the console's pages.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The tokens of this start and the hosts a loopback console answers.
#[derive(Debug)]
pub(super) struct Guard {
    /// The CSRF token every change must carry.
    csrf: String,
    /// The access token every request must carry; `None` on loopback.
    access: Option<String>,
    /// The `Host` values accepted; `None`: any (a remote console's token guards it).
    hosts: Option<Vec<String>>,
    /// A loopback console's address, whose peers must be this process's user.
    local: Option<SocketAddr>,
}

impl Guard {
    /// New tokens for a console bound to `bound`; a loopback console checks `Host`, any
    /// other needs the access token.
    pub(super) fn new(bound: SocketAddr, loopback: bool) -> Result<Self, Error> {
        let port = bound.port();
        Ok(Self {
            csrf: token()?,
            access: if loopback { None } else { Some(token()?) },
            local: loopback.then_some(bound),
            hosts: loopback.then(|| {
                vec![
                    bound.to_string(),
                    format!("localhost:{port}"),
                    format!("127.0.0.1:{port}"),
                    format!("[::1]:{port}"),
                ]
            }),
        })
    }

    /// The URL to open: with the access token when one is needed.
    pub(super) fn start_url(&self, bound: SocketAddr) -> String {
        let base = format!("http://{}/", browsable(bound));
        match &self.access {
            Some(token) => format!("{base}?token={token}"),
            None => base,
        }
    }

    /// The CSRF token, for the pages to embed.
    pub(super) fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Refuses a change whose CSRF token (header, else the form's `csrf` field) is
    /// missing or wrong, or that another site's page sent.
    pub(super) fn check_change(
        &self,
        headers: &HeaderMap,
        form_token: Option<&str>,
    ) -> Result<(), String> {
        if headers
            .get("sec-fetch-site")
            .is_some_and(|site| site.as_bytes() == b"cross-site")
        {
            return Err("refused: the request came from another site's page".to_owned());
        }
        if let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST))
        {
            let expected = format!("http://{}", String::from_utf8_lossy(host.as_bytes()));
            if origin.as_bytes() != expected.as_bytes() {
                return Err(format!(
                    "refused: the request came from {}, not from the console ({expected})",
                    String::from_utf8_lossy(origin.as_bytes())
                ));
            }
        }
        let given = headers
            .get(CSRF_HEADER)
            .map(HeaderValue::as_bytes)
            .or(form_token.map(str::as_bytes));
        match given {
            None => Err(format!(
                "refused: the request carries no CSRF token (the {CSRF_HEADER} header or the \
                 csrf form field): make changes from the console's own pages"
            )),
            Some(given) if !bool::from(given.ct_eq(self.csrf.as_bytes())) => Err(
                "refused: the CSRF token is not this console's: reload the page (the console \
                 may have restarted)"
                    .to_owned(),
            ),
            Some(_) => Ok(()),
        }
    }
}

/// A random token: 192 bits, URL-safe base64.
fn token() -> Result<String, Error> {
    let mut bytes = [0u8; 24];
    SystemRandom::new().fill(&mut bytes).map_err(|_| {
        Error::new(
            Exit::Error,
            "cannot read random bytes from the operating system for the console's tokens",
        )
    })?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The middleware in front of every route: user, Host, access token, then the security
/// headers on whatever the handler answers.
pub(super) async fn check(
    State(console): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let guard = &console.guard;
    if let Some(local) = guard.local {
        if let Err(message) = peer::same_user(peer, local) {
            return secured(refusal(StatusCode::FORBIDDEN, &message));
        }
    }
    if let Some(hosts) = &guard.hosts {
        let host = request
            .headers()
            .get(header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
            .unwrap_or_default();
        if !hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(&host))
        {
            return secured(refusal(
                StatusCode::MISDIRECTED_REQUEST,
                &format!(
                    "This console answers requests for {} only, not for {host:?}.",
                    hosts.join(", ")
                ),
            ));
        }
    }
    if let Some(access) = &guard.access {
        if let Some(given) = query_token(&request) {
            if !bool::from(given.as_bytes().ct_eq(access.as_bytes())) {
                return secured(refusal(
                    StatusCode::UNAUTHORIZED,
                    "The access token in this URL is not this console's: open the URL the \
                     console printed when it started (it changes at every start).",
                ));
            }
            // Keep the token in a cookie and take it out of the address bar and history.
            let target = without_token(&request);
            let mut response = Redirect::to(&target).into_response();
            if let Ok(cookie) = HeaderValue::from_str(&format!(
                "{ACCESS_COOKIE}={access}; HttpOnly; SameSite=Strict; Path=/"
            )) {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            return secured(response);
        }
        if !cookie_token(request.headers())
            .is_some_and(|given| bool::from(given.as_bytes().ct_eq(access.as_bytes())))
        {
            return secured(refusal(
                StatusCode::UNAUTHORIZED,
                "This console needs its access token: open the URL with ?token= that the \
                 console printed when it started.",
            ));
        }
    }
    secured(next.run(request).await)
}

/// The security headers, on every response (a handler may have set its own policy).
fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(POLICY),
        );
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A page saying why the request was refused.
fn refusal(status: StatusCode, message: &str) -> Response {
    (status, html::message_page("Refused", message)).into_response()
}

/// The `token` query parameter, if any.
fn query_token(request: &Request) -> Option<String> {
    let query = request.uri().query()?;
    form_pairs(query)
        .into_iter()
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value)
}

/// The request's path and query without the `token` parameter.
fn without_token(request: &Request) -> String {
    let path = request.uri().path();
    let rest: Vec<String> = request
        .uri()
        .query()
        .map(form_pairs)
        .unwrap_or_default()
        .into_iter()
        .filter(|(key, _)| key != "token")
        .map(|(key, value)| format!("{}={}", html::url_encode(&key), html::url_encode(&value)))
        .collect();
    if rest.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", rest.join("&"))
    }
}

/// The decoded pairs of a query string (axum's own decoding); none when it is malformed.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{query}").parse().unwrap_or_default(),
    )
    .map(|axum::extract::Query(pairs)| pairs)
    .unwrap_or_default()
}

/// The access token in the request's cookies.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == ACCESS_COOKIE)
        .map(|(_, value)| value.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new("127.0.0.1:8080".parse().unwrap(), true).unwrap()
    }

    #[test]
    fn changes_need_the_csrf_token() {
        let guard = guard();
        let mut headers = HeaderMap::new();
        assert!(
            guard
                .check_change(&headers, None)
                .unwrap_err()
                .contains("no CSRF token")
        );
        assert!(
            guard
                .check_change(&headers, Some("nope"))
                .unwrap_err()
                .contains("not this console's")
        );
        assert!(guard.check_change(&headers, Some(guard.csrf())).is_ok());
        headers.insert(CSRF_HEADER, HeaderValue::from_str(guard.csrf()).unwrap());
        assert!(guard.check_change(&headers, None).is_ok());
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(guard.check_change(&headers, None).is_ok());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(
            guard
                .check_change(&headers, None)
                .unwrap_err()
                .contains("evil.example")
        );
        headers.remove(header::ORIGIN);
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(
            guard
                .check_change(&headers, None)
                .unwrap_err()
                .contains("another site")
        );
    }

    #[test]
    fn tokens_differ_per_start_and_remote_needs_one() {
        let a = guard();
        let b = guard();
        assert_ne!(a.csrf(), b.csrf());
        assert!(a.access.is_none());
        assert_eq!(
            a.start_url("127.0.0.1:8080".parse().unwrap()),
            "http://127.0.0.1:8080/"
        );
        let remote = Guard::new("0.0.0.0:9000".parse().unwrap(), false).unwrap();
        let url = remote.start_url("0.0.0.0:9000".parse().unwrap());
        assert!(url.starts_with("http://127.0.0.1:9000/?token="), "{url}");
        assert!(remote.hosts.is_none());
    }

    #[test]
    fn cookies_and_queries() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; killswitch_console=xyz; c=d"),
        );
        assert_eq!(cookie_token(&headers).as_deref(), Some("xyz"));
        let request = Request::builder()
            .uri("/audit?program=demo&token=abc&actor=a%20b")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(query_token(&request).as_deref(), Some("abc"));
        assert_eq!(without_token(&request), "/audit?program=demo&actor=a%20b");
    }
}
