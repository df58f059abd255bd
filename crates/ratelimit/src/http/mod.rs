//! placeholder
pub struct RateLimitConfig;
pub struct RateLimitLayer;
pub struct RateLimitService;
pub struct RateLimitSubject;
