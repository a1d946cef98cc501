//! Who may use the console: the holder of the registry's admin token. The
//! sign-in page takes the token and answers with a session cookie holding a
//! random session id (never the token), `HttpOnly; SameSite=Strict;
//! Path=/`, plus `Secure` when the request came over HTTPS. Sessions live in
//! memory (a restart signs everyone out) and end after [`SESSION_LIFETIME`]
//! or at sign-out. Every form carries the session's CSRF token and is
//! refused without it, and a request whose `Origin` is another site's is
//! refused whatever it carries. An agent's bearer token opens nothing here:
//! only a session does.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::html::{self, esc};
use super::{Console, Refusal};
use crate::auth::same_secret;

/// The sign-in page.
pub const SIGN_IN: &str = "/console/sign-in";
/// The session cookie's name.
pub const COOKIE: &str = "corral_console";
/// How long a session lasts after sign-in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// The most sessions kept at once; signing in past it ends the oldest.
const MAX_SESSIONS: usize = 1024;

/// The signed-in sessions, by session id.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
}

/// One signed-in operator.
#[derive(Debug, Clone)]
pub struct Session {
    /// The id the cookie holds.
    pub id: String,
    /// The token every form of this session carries.
    pub csrf: String,
    expires: Instant,
}

impl Sessions {
    /// Opens a session.
    pub fn open(&self) -> Session {
        let session = Session {
            id: crate::auth::random_token(),
            csrf: crate::auth::random_token(),
            expires: Instant::now() + SESSION_LIFETIME,
        };
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        open.retain(|_, session| session.expires > now);
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open
                .values()
                .min_by_key(|session| session.expires)
                .map(|session| session.id.clone())
        {
            open.remove(&oldest);
        }
        open.insert(session.id.clone(), session.clone());
        session
    }

    /// The live session with `id`.
    pub fn find(&self, id: &str) -> Option<Session> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(id)
            .filter(|session| session.expires > Instant::now())
            .cloned()
    }

    /// Ends the session with `id`.
    pub fn close(&self, id: &str) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.remove(id);
    }
}

impl Session {
    /// Checks a form's CSRF token against this session's (and the request's
    /// `Origin`, when it has one).
    pub fn check_form(&self, headers: &HeaderMap, csrf: &str) -> Result<(), Refusal> {
        check_origin(headers)?;
        if !same_secret(csrf, &self.csrf) {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or not this session's: reload the page and try again",
            ));
        }
        Ok(())
    }
}

/// Refuses a request that names another site as its `Origin`.
fn check_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("");
    let origin = origin.to_str().unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    if origin_host.is_some_and(|origin_host| !host.is_empty() && origin_host == host) {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!("a form sent from another site (Origin `{origin}`) is refused"),
        ))
    }
}

/// The value of cookie `name` in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Whether the request came over HTTPS (directly, or through a proxy that
/// says so), so that the cookie is marked `Secure`.
fn over_https(parts_uri: &axum::http::Uri, headers: &HeaderMap) -> bool {
    parts_uri.scheme_str() == Some("https")
        || headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

fn session_cookie(value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}")
}

fn session_of(console: &Console, headers: &HeaderMap) -> Option<Session> {
    console.sessions.find(cookie(headers, COOKIE)?)
}

/// A signed-in session, for pages: without one, the answer is the way to
/// the sign-in page.
pub struct PageSession(pub Session);

/// A signed-in session, for data (JSON, files): without one, `401`.
pub struct DataSession(pub Session);

impl FromRequestParts<Console> for PageSession {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Refusal> {
        session_of(console, &parts.headers)
            .map(PageSession)
            .ok_or(Refusal::SignIn)
    }
}

impl FromRequestParts<Console> for DataSession {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Refusal> {
        session_of(console, &parts.headers)
            .map(DataSession)
            .ok_or_else(|| {
                Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    "sign in to the console first (an agent's token does not open it)",
                )
            })
    }
}

/// `/`: the jobs page once signed in, else the sign-in page.
pub async fn home(State(console): State<Console>, headers: HeaderMap) -> Redirect {
    match session_of(&console, &headers) {
        Some(_) => Redirect::to("/console/jobs"),
        None => Redirect::to(SIGN_IN),
    }
}

/// The sign-in page.
pub async fn sign_in_page() -> Html<String> {
    sign_in_form(None)
}

fn sign_in_form(problem: Option<&str>) -> Html<String> {
    let problem = problem
        .map(|text| format!(r#"<p class="problem" id="problem">{}</p>"#, esc(text)))
        .unwrap_or_default();
    let body = format!(
        r#"<section class="sign-in">
<h1>Sign in</h1>
{problem}
<form method="post" action="{SIGN_IN}">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit" id="sign-in">Sign in</button>
</form>
<p class="hint">The admin token is in the file <code>admin-token</code> of the registry's data folder
(<code>corral demo</code> prints where).</p>
</section>"#
    );
    Html(html::layout("Sign in", None, None, &body))
}

/// What the sign-in form sends.
#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    token: String,
}

/// Checks the admin token; opens a session and sets its cookie.
pub async fn sign_in(
    State(console): State<Console>,
    parts_uri: axum::http::Uri,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    if let Err(refusal) = check_origin(&headers) {
        return refusal.into_response();
    }
    if !same_secret(form.token.trim(), console.registry.admin_token()) {
        let page = sign_in_form(Some(
            "That is not the registry's admin token (an agent's token or secret does not open the console).",
        ));
        return (StatusCode::UNAUTHORIZED, page).into_response();
    }
    let session = console.sessions.open();
    let cookie = session_cookie(
        &session.id,
        SESSION_LIFETIME.as_secs(),
        over_https(&parts_uri, &headers),
    );
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to("/console/jobs"),
    )
        .into_response()
}

/// What a form that only proves its session sends.
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Ends the session and clears its cookie.
pub async fn sign_out(
    State(console): State<Console>,
    PageSession(session): PageSession,
    parts_uri: axum::http::Uri,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Refusal> {
    session.check_form(&headers, &form.csrf)?;
    console.sessions.close(&session.id);
    let cookie = session_cookie("", 0, over_https(&parts_uri, &headers));
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(SIGN_IN)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_until_it_is_closed() {
        let sessions = Sessions::default();
        let session = sessions.open();
        assert_ne!(session.id, session.csrf);
        assert_eq!(
            sessions.find(&session.id).map(|s| s.csrf),
            Some(session.csrf.clone())
        );
        assert!(sessions.find("not-a-session").is_none());
        sessions.close(&session.id);
        assert!(sessions.find(&session.id).is_none());
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_https() {
        let plain = session_cookie("abc", 60, false);
        assert_eq!(
            plain,
            "corral_console=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60"
        );
        assert!(session_cookie("abc", 60, true).ends_with("; Secure"));
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(over_https(&"/console".parse().unwrap(), &headers));
        assert!(!over_https(&"/console".parse().unwrap(), &HeaderMap::new()));
    }

    #[test]
    fn a_form_from_another_origin_or_without_the_token_is_refused() {
        let session = Sessions::default().open();
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(session.check_form(&headers, &session.csrf).is_ok());
        assert!(session.check_form(&headers, "").is_err());
        headers.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(session.check_form(&headers, &session.csrf).is_ok());
        headers.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(session.check_form(&headers, &session.csrf).is_err());
        headers.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(session.check_form(&headers, &session.csrf).is_err());
    }

    #[test]
    fn the_session_cookie_is_read_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; corral_console=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
