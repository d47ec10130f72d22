//! Who is asking: every `/api` request carries `Authorization: Bearer <api key>`.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use clarion_model::{ErrorCode, Role};

use crate::{error::ApiError, state::AppState, store::keys};

pub use crate::store::keys::Caller;

impl Caller {
    /// Refuses with 403 unless the key's role allows `required`.
    pub fn require(&self, required: Role) -> Result<(), ApiError> {
        if self.role.allows(required) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "this needs a key with role {required} or higher; this key is {}",
                    self.role
                ),
            ))
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(|key| key.trim().to_string());
        Box::pin(async move {
            let state = state
                .ok_or_else(|| ApiError::new(ErrorCode::Internal, "application state missing"))?;
            let key = presented.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    "send an API key as `Authorization: Bearer <key>` (create one with `clarion keys create`)",
                )
            })?;
            keys::authenticate(&state.db, &key).await?.ok_or_else(|| {
                ApiError::new(ErrorCode::Unauthorized, "the API key is unknown or revoked")
            })
        })
    }
}
