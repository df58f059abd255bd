//! Who is calling: the seam where authentication plugs in.
//!
//! Every request is anonymous until accounts arrive; the extractor and the ownership check
//! already sit on every route that will need them, so authentication only changes this file.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;

/// The authenticated principal of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credentials were presented.
    Anonymous,
}

impl Caller {
    /// The caller's user id, if authenticated.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
        }
    }

    /// Allows managing a resource owned by `owner` (`None`: created anonymously).
    pub fn may_manage(&self, owner: Option<&str>) -> Result<(), ApiError> {
        match (owner, self.user_id()) {
            (None, _) => Ok(()),
            (Some(owner), Some(me)) if owner == me => Ok(()),
            (Some(_), None) => Err(ApiError::Unauthorized {
                challenge: "Bearer",
                detail: "sign in to manage this link".into(),
            }),
            (Some(_), Some(_)) => Err(ApiError::Forbidden(
                "this link belongs to another user".into(),
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller::Anonymous)
    }
}
