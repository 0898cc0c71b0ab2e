//! Mounts the operator dashboard (crate `dashboard_ssr`): its pages call the management API's
//! router in process, and its login checks tokens with the API's authenticator (the same cache,
//! failure limits and revocation as `/v1`).

use std::sync::Arc;

use axum::Router;
use dashboard_ssr::{Dashboard, Identity, TokenCheck};

use crate::auth::display_prefix;
use crate::http::middleware::current_client_addr;
use crate::state::AppState;

pub fn routes(state: &AppState) -> Router {
    let api = crate::api::routes(state.clone()).with_state(state.clone());
    let auth = Arc::clone(&state.api_auth);
    let check: TokenCheck = Arc::new(move |token: String| {
        let auth = Arc::clone(&auth);
        // The login request's client address, for the failed-attempt limits.
        let source = current_client_addr().unwrap_or_else(|| "unknown".to_string());
        Box::pin(async move {
            let principal = auth
                .authenticate_from(Some(&format!("Bearer {token}")), &source)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Identity {
                org: principal.org_id,
                agent: principal.agent_id,
                scopes: principal.scopes,
                token_prefix: display_prefix(&token).to_string(),
            })
        })
    });
    dashboard_ssr::router(Dashboard {
        api,
        check,
        secure_cookies: state.config.dashboard_secure_cookies,
        session_idle: state.config.dashboard_session_idle,
        session_max: state.config.dashboard_session_max,
    })
}
