//! Operator access tokens: HS256 JWTs with a pinned algorithm, issuer, audience and expiry.

use crate::domain::{OperatorId, Role, TenantId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

pub const ISSUER: &str = "gmp";
pub const AUDIENCE: &str = "gmp-operator-api";
const ALGORITHM: Algorithm = Algorithm::HS256;

/// What an access token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The operator id.
    pub sub: Uuid,
    /// The operator's tenant.
    pub tid: Uuid,
    pub role: Role,
    /// Platform admin: may provision tenants.
    #[serde(default)]
    pub padm: bool,
    /// The operator's session epoch at issue: the token dies when the epoch moves on.
    #[serde(default)]
    pub sep: i32,
    pub iat: u64,
    pub exp: u64,
    pub jti: Uuid,
}

impl Claims {
    pub fn operator_id(&self) -> OperatorId {
        OperatorId(self.sub)
    }

    pub fn tenant_id(&self) -> TenantId {
        TenantId(self.tid)
    }
}

/// Signs and verifies access tokens. Only HS256 tokens with our issuer and audience pass;
/// `alg: none` and every other algorithm are rejected before the signature is even checked.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl JwtKeys {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A fresh access token for this operator.
    pub fn issue(
        &self,
        operator: OperatorId,
        tenant: TenantId,
        role: Role,
        platform_admin: bool,
        session_epoch: i32,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = jsonwebtoken::get_current_timestamp();
        self.sign(&Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: operator.0,
            tid: tenant.0,
            role,
            padm: platform_admin,
            sep: session_epoch,
            iat: now,
            exp: now + self.ttl.as_secs(),
            jti: Uuid::new_v4(),
        })
    }

    /// Signs arbitrary claims; tests use it to forge expired or foreign tokens.
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        encode(&Header::new(ALGORITHM), claims, &self.encoding)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        decode::<Claims>(token, &self.decoding, &self.validation).map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn keys() -> JwtKeys {
        JwtKeys::new(&[7u8; 32], Duration::from_secs(900))
    }

    fn claims(keys: &JwtKeys) -> Claims {
        let token = keys
            .issue(OperatorId::new(), TenantId::new(), Role::Editor, false, 0)
            .unwrap();
        keys.verify(&token).unwrap()
    }

    #[test]
    fn issued_tokens_verify_and_carry_the_tenant_and_role() {
        let keys = keys();
        let (operator, tenant) = (OperatorId::new(), TenantId::new());
        let token = keys.issue(operator, tenant, Role::Admin, true, 3).unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!(claims.operator_id(), operator);
        assert_eq!(claims.tenant_id(), tenant);
        assert_eq!(claims.role, Role::Admin);
        assert!(claims.padm);
        assert_eq!(claims.sep, 3);
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn expired_tokens_are_rejected() {
        let keys = keys();
        let mut expired = claims(&keys);
        expired.exp = jsonwebtoken::get_current_timestamp() - 60;
        assert!(keys.verify(&keys.sign(&expired).unwrap()).is_err());
    }

    #[test]
    fn wrong_audience_issuer_or_key_are_rejected() {
        let keys = keys();
        let mut wrong_aud = claims(&keys);
        wrong_aud.aud = "someone-else".into();
        assert!(keys.verify(&keys.sign(&wrong_aud).unwrap()).is_err());

        let mut wrong_iss = claims(&keys);
        wrong_iss.iss = "evil".into();
        assert!(keys.verify(&keys.sign(&wrong_iss).unwrap()).is_err());

        let other = JwtKeys::new(&[8u8; 32], Duration::from_secs(900));
        assert!(keys.verify(&other.sign(&claims(&keys)).unwrap()).is_err());
    }

    #[test]
    fn alg_none_and_tampered_tokens_are_rejected() {
        let keys = keys();
        let token = keys.sign(&claims(&keys)).unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(keys.verify(&format!("{none_header}.{payload}.")).is_err());

        let mut forged = claims(&keys);
        forged.role = Role::Admin;
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let signature = token.split('.').nth(2).unwrap();
        let header = token.split('.').next().unwrap();
        assert!(
            keys.verify(&format!("{header}.{forged_payload}.{signature}"))
                .is_err()
        );
    }
}
