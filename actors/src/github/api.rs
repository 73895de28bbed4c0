//! GitHub's REST API, the two requests the integration makes: `POST /repos/{owner}/{repo}/issues`
//! `{title, body, labels}` and `POST /repos/{owner}/{repo}/issues/{number}/comments` `{body}`, with
//! the headers GitHub documents (`Authorization: Bearer`, `Accept: application/vnd.github+json`,
//! `X-GitHub-Api-Version: 2022-11-28`, a `User-Agent`), and its error answers mapped to
//! [`GitHubError`]s: 401, 403 (a rate limit when `x-ratelimit-remaining` is 0 or `retry-after` is
//! set), 404, 422, 429.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT};
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::messages::github::GitHubError;

/// The API version this client speaks.
pub const API_VERSION: &str = "2022-11-28";

/// An issue as GitHub answers it (the fields used).
#[derive(Debug, Clone, Deserialize)]
pub struct Issue {
    pub number: u64,
    pub html_url: String,
}

/// A client of one GitHub (github.com or an Enterprise server).
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    /// `https://api.github.com`, or `https://HOST/api/v3`; no trailing slash.
    base: String,
    token: String,
}

impl Api {
    pub fn new(base: &str, token: &str, timeout: Duration) -> Result<Api, String> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/vnd.github+json"));
        headers.insert("x-github-api-version", HeaderValue::from_static(API_VERSION));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("agent-bridge/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Api { http, base: base.trim_end_matches('/').to_owned(), token: token.to_owned() })
    }

    /// Opens an issue in `repo` (`owner/name`).
    pub async fn create_issue(&self, repo: &str, title: &str, body: &str, labels: &[String]) -> Result<Issue, GitHubError> {
        let mut req = json!({ "title": title, "body": body });
        if !labels.is_empty() {
            req["labels"] = json!(labels);
        }
        let answer = self.post(&format!("/repos/{repo}/issues"), &req).await?;
        answer.json::<Issue>().await.map_err(|e| GitHubError::Unreachable(format!("GitHub's answer is not an issue: {e}")))
    }

    /// Comments on issue `number` of `repo`.
    pub async fn comment(&self, repo: &str, number: u64, body: &str) -> Result<(), GitHubError> {
        self.post(&format!("/repos/{repo}/issues/{number}/comments"), &json!({ "body": body })).await.map(drop)
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Response, GitHubError> {
        let answer = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| GitHubError::Unreachable(e.without_url().to_string()))?;
        if answer.status().is_success() {
            return Ok(answer);
        }
        Err(error_of(answer).await)
    }
}

/// What a non-2xx answer means.
async fn error_of(answer: Response) -> GitHubError {
    let status = answer.status();
    let header = |name: &str| answer.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let retry_after = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok());
    let exhausted = header("x-ratelimit-remaining").is_some_and(|v| v.trim() == "0");
    let reset_in = header("x-ratelimit-reset").and_then(|v| v.trim().parse::<i64>().ok()).map(|reset| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        (reset - now).max(0) as u64
    });
    let text = answer.text().await.unwrap_or_default();
    let message = message_of(&text);
    match status {
        StatusCode::UNAUTHORIZED => GitHubError::Unauthorized(message),
        StatusCode::TOO_MANY_REQUESTS => GitHubError::RateLimited { status: 429, retry_after_s: retry_after.or(reset_in) },
        StatusCode::FORBIDDEN if retry_after.is_some() || exhausted => {
            GitHubError::RateLimited { status: 403, retry_after_s: retry_after.or(reset_in) }
        }
        StatusCode::FORBIDDEN => GitHubError::Forbidden(message),
        StatusCode::NOT_FOUND => GitHubError::NotFound(message),
        StatusCode::UNPROCESSABLE_ENTITY => GitHubError::Unprocessable(message),
        other => GitHubError::Api { status: other.as_u16(), message },
    }
}

/// GitHub's `message`, with the `errors` it lists (422), cut to 1,000 characters.
fn message_of(text: &str) -> String {
    let message = match serde_json::from_str::<Value>(text) {
        Ok(v) => {
            let main = v.get("message").and_then(Value::as_str).unwrap_or("no message").to_owned();
            match v.get("errors").filter(|e| e.as_array().is_some_and(|a| !a.is_empty())) {
                Some(errors) => format!("{main}: {errors}"),
                None => main,
            }
        }
        Err(_) => text.trim().to_owned(),
    };
    message.chars().take(1000).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_githubs_errors() {
        assert_eq!(message_of(r#"{"message":"Bad credentials","documentation_url":"x"}"#), "Bad credentials");
        let v = message_of(r#"{"message":"Validation Failed","errors":[{"field":"title","code":"missing_field"}]}"#);
        assert!(v.starts_with("Validation Failed: ") && v.contains("missing_field"), "{v}");
        assert_eq!(message_of("plain"), "plain");
    }
}
