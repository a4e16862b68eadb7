//! The operators the benchmark calls the operator API as: an editor created through the service
//! layer in a seeded tenant, and signing in over HTTP.

use super::seed;
use crate::domain::TenantId;
use crate::domain::audit::Actor;
use crate::domain::operator::Role;
use crate::services::operators::{self, NewOperatorInput};
use crate::state::AppState;
use serde_json::{Value, json};

/// An operator's sign-in.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

/// Creates an editor of `tenant` (as the system), named after `purpose`.
pub async fn create_editor(state: &AppState, tenant: TenantId, purpose: &str) -> Result<Credentials, String> {
    let password = crate::auth::token::generate("bench-");
    let email = format!(
        "bench-{purpose}-{}@bench.test",
        &tenant.0.simple().to_string()[..8]
    );
    let input = NewOperatorInput {
        email: email.clone(),
        display_name: Some(format!("Benchmark ({purpose})")),
        role: Role::Editor,
        password: password.clone(),
    };
    operators::create(state, &Actor::system(tenant), input, false)
        .await
        .map_err(|e| seed::describe(&e))?;
    Ok(Credentials { email, password })
}

/// Signs in at `base` and returns the access token.
pub async fn sign_in(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> Result<String, String> {
    let response = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.json::<Value>().await.map_err(|e| e.to_string())?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("sign-in as {email}: {status} {body}"))
}
