//! The one piece of shared application state, registered once as `web::Data<AppState>`.

use crate::auth::JwtKeys;
use crate::config::{Config, Keys};
use crate::secrets::Keyring;
use sea_orm::DatabaseConnection;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub jwt: JwtKeys,
    pub config: Arc<Config>,
    pub keyring: Keyring,
}

impl AppState {
    pub fn new(db: DatabaseConnection, config: Config, keys: Keys) -> Self {
        Self {
            jwt: JwtKeys::new(keys.jwt_secret.expose(), config.access_token_ttl()),
            db,
            config: Arc::new(config),
            keyring: keys.keyring,
        }
    }
}
