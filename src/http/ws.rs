//! `GET /ws/{client_id}`: validates the path and query, then hands the socket to a `Session`.


use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use agent_bridge_actors::session::{self, Encoding, SessionParams};
use agent_bridge_protocol::ids::validate_client_id;
use serde::Deserialize;

use super::auth::{session_auth, Caller};
use super::{parse_since, parse_types, ApiError, AppState};
use agent_bridge_actors::auth::Permission;

/// How long a connection may outlive its session's close before the edge shuts its socket: the
/// close frame and the peer's answer go out well within it.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Query options of the upgrade request.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    since: Option<String>,
    types: Option<String>,
    encoding: Option<String>,
}

pub async fn connect(
    req: HttpRequest,
    stream: web::Payload,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let client_id = path.into_inner();
    validate_client_id(&client_id).map_err(ApiError::from)?;
    let caller = Caller::of(&req)?;
    caller.act_as(&client_id, Permission::Read)?;
    let query = web::Query::<WsQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?
        .into_inner();
    let since = parse_since(query.since.as_deref(), "since")?;
    let types = parse_types(query.types.as_deref());
    let encoding = match query.encoding.as_deref() {
        None | Some("json") => Encoding::Json,
        Some("bincode") => Encoding::Bincode,
        Some(other) => {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("unknown encoding {other:?}: use json or bincode"))
                .into())
        }
    };
    let auth = session_auth(&state, &caller, &client_id)?;
    let on_stop = super::edge::Connection::closer(&req, CLOSE_GRACE);
    let params = SessionParams { client_id, since, types, encoding, auth, on_stop };
    let resp = session::start(&req, stream, params, &state.broker.sessions)?;
    Ok(state.closing.wrap(resp, Some(super::shutdown::Closing::ws_close_frame())))
}
