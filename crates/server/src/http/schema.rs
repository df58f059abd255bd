//! Rules of the request syntax that the OpenAPI document states, each written once: a
//! schema type per rule (`HostName`, the cursors, `If-Match`, display names) that fields and
//! parameters name with `value_type`, and the sentences that describe in an operation the
//! rules no schema can state (password strength, a key reused with another body, …), shared
//! by every operation they apply to and by `scripts/schemathesis-allowed.toml`.

use std::borrow::Cow;

use basis_auth::role::Role;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// A host name: dot-separated labels of letters, digits and inner hyphens, at most 253
/// characters (what `?domain=` takes).
pub const HOST_NAME_PATTERN: &str = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$";
/// The cursor of a list ordered by id: the id of the previous page's last item.
pub const ID_CURSOR_PATTERN: &str = "^[0-9]{1,18}$";
/// An opaque page cursor: URL-safe base64 without padding.
pub const TOKEN_CURSOR_PATTERN: &str = "^[A-Za-z0-9_-]{1,4096}$";
/// A token or code as issued: visible ASCII.
pub const TOKEN_PATTERN: &str = "^[!-~]{1,4096}$";
/// An account id (the cursor of the account list is one).
pub const USER_CURSOR_PATTERN: &str = "^[0-9a-f]{32}$";
/// `If-Match`: `*` or a comma-separated list of entity tags (RFC 9110 §13.1.1).
pub const IF_MATCH_PATTERN: &str = r#"^(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)$"#;
/// 1 to 100 characters, none of them a control character (C0, DEL or C1), not starting or
/// ending with white space (names are trimmed, so a blank one is empty).
pub const NAME_PATTERN: &str = r"^[^\s\u0000-\u001F\u007F-\u009F]([^\u0000-\u001F\u007F-\u009F]{0,98}[^\s\u0000-\u001F\u007F-\u009F])?$";
/// A post's title: 1 to 200 characters, no control characters, not starting or ending with
/// white space.
pub const TITLE_PATTERN: &str = r"^[^\s\u0000-\u001F\u007F-\u009F]([^\u0000-\u001F\u007F-\u009F]{0,198}[^\s\u0000-\u001F\u007F-\u009F])?$";
/// A post's category or tag: 1 to 40 letters, digits and `-`.
pub const LABEL_PATTERN: &str = r"^(?:[^\W_]|-){1,40}$";
/// A link's tag: 1 to 50 letters, digits, spaces and `- _ . :`, not starting or ending with
/// a space.
pub const LINK_TAG_PATTERN: &str = r"^[\w.:-]([\w .:-]{0,48}[\w.:-])?$";
/// A position in the ledger's event feed: `tx.seq`.
pub const FEED_POSITION_PATTERN: &str = r"^[0-9]{1,18}\.[0-9]{1,18}$";
/// Where a sign-in ends: a path on this server (not `//host` nor holding a backslash), or
/// an absolute http(s) URL.
pub const REDIRECT_PATTERN: &str = r"^(/([^/\\][^\\]*)?|https?://[^\\]+)$";

/// Sentences for the operations: rules the API enforces that no schema can state. Each is
/// also the `reason` of its entry in `scripts/schemathesis-allowed.toml`.
pub mod rules {
    /// A key reused with another body.
    pub const IDEMPOTENCY_KEY_REUSE: &str = "An Idempotency-Key already used with a different request body is refused with 422: the key names one request, whose stored answer a retry gets back.";
    /// A stale `If-Match`.
    pub const STALE_IF_MATCH: &str = "A well-formed If-Match that no longer names the current representation is refused with 412: someone changed the resource since you read it.";
    /// Password strength.
    pub const PASSWORD_STRENGTH: &str = "A password that is easy to guess (repeats, sequences, common words, estimated by zxcvbn) or on the breached-password list is refused, whatever its length.";
    /// Image content.
    pub const IMAGE_CONTENT: &str = "The body must be a PNG, JPEG or WebP image that decodes; anything else is refused with 415 or 422 whatever its declared type.";
    /// Existence of a referenced resource.
    pub const REFERENCES_EXIST: &str = "Ids in the body must name resources that exist and that you may use, and quantities must be in stock; others are refused with 422 naming the field.";
    /// Domains served by the instance.
    pub const SERVED_DOMAINS: &str = "A domain must be one this server is configured to serve (--base-url and --domain); another well-formed host name is refused naming `domain`.";
    /// Tokens issued by the server.
    pub const ISSUED_TOKENS: &str = "Tokens, codes and cursors are accepted only as this server issued them (unexpired, unused, for this list and order); well-formed others are refused naming the field.";
    /// Redirect targets.
    pub const REDIRECT_TARGETS: &str = "An absolute redirect target must be on this server's origin or on the configured allowlist (--oidc-redirect-allowlist).";
    /// The CSV form of a bulk import.
    pub const BULK_CSV: &str = "A CSV import must start with a header naming known columns and hold at least one link; otherwise it is refused with 400.";
    /// The size of a request head.
    pub const HEAD_SIZE: &str = "A request head (request line and headers) over the server's limit is refused with 431 before any route reads it.";
    /// Balances stay within 64 bits.
    pub const BALANCE_LIMITS: &str = "An amount that would take a balance past 2^63-1 minor units, or below what the account may owe, is refused with 422 naming `amount`.";
    /// A bulk creation reports each link.
    pub const BULK_PARTIAL: &str = "A bulk creation answers 207 with one result per link: a link that breaks a rule is refused in its own result (with the status and problem a POST /shorten would get), not by failing the whole request.";
    /// Webhook endpoints.
    pub const WEBHOOK_TARGET: &str = "A webhook URL must resolve to a public address (no loopback, private or link-local host) and use https outside development.";
    /// `reuse` on a link that is not plain.
    pub const REUSE_PLAIN: &str = "`reuse` applies only to a plain link: with an alias, password, expiry, click limit, redirect type, tags or a title it is refused with 400 naming `reuse`.";
    /// A timeout on a transfer that is not pending.
    pub const PENDING_TIMEOUT: &str = "`timeoutSeconds` applies only to a pending transfer: without `pending: true` it is refused with 422 naming `timeoutSeconds`.";
    /// Routing rules that cannot work.
    pub const LINK_RULES: &str = "Routing rules are refused with 422 naming the member when they cannot work: more than 10 split destinations and targets together, split weights that sum to 0, a destination that breaks the rules of `longUrl`, or a country target on a server without --geoip-db.";
    /// Content rules on text fields.
    pub const TEXT_CONTENT: &str = "Text fields are refused when they hold control characters, blank text, or (links) a URL that does not parse or points back at this server, and an expiry must be in the future.";
}

/// Which operations each rule of [`rules`] applies to: `(rule, [(method, path)])`. The
/// document appends the rule's sentence to each operation's description.
pub const DESCRIBED: &[(&str, &[(&str, &str)])] = &[
    (
        rules::IDEMPOTENCY_KEY_REUSE,
        &[
            ("post", "/accounts/{id}/deposits"),
            ("post", "/transfers"),
            ("post", "/transfers/{id}/post"),
            ("post", "/transfers/{id}/void"),
            ("post", "/orders"),
            ("post", "/posts"),
            ("post", "/posts/{id}/comments"),
        ],
    ),
    (
        rules::STALE_IF_MATCH,
        &[
            ("put", "/posts/{id}"),
            ("patch", "/posts/{id}"),
            ("delete", "/posts/{id}"),
            ("put", "/comments/{id}"),
            ("patch", "/comments/{id}"),
            ("delete", "/comments/{id}"),
        ],
    ),
    (
        rules::PASSWORD_STRENGTH,
        &[
            ("post", "/users"),
            ("post", "/users/{id}/password"),
            ("post", "/auth/password-reset/confirm"),
        ],
    ),
    (rules::IMAGE_CONTENT, &[("put", "/users/{id}/avatar")]),
    (rules::REUSE_PLAIN, &[("post", "/shorten")]),
    (rules::PENDING_TIMEOUT, &[("post", "/transfers")]),
    (
        rules::LINK_RULES,
        &[("post", "/shorten"), ("patch", "/links/{code}")],
    ),
    (
        rules::REFERENCES_EXIST,
        &[
            ("post", "/orders"),
            ("post", "/transfers"),
            ("post", "/products"),
        ],
    ),
    (
        rules::SERVED_DOMAINS,
        &[
            ("post", "/shorten"),
            ("post", "/links/bulk"),
            ("get", "/links"),
            ("get", "/links/{code}"),
            ("patch", "/links/{code}"),
            ("delete", "/links/{code}"),
            ("get", "/links/{code}/stats"),
            ("get", "/links/{code}/visits"),
            ("post", "/links/{code}/exports"),
            ("get", "/links/{code}/exports/{id}"),
        ],
    ),
    (
        rules::ISSUED_TOKENS,
        &[
            ("get", "/links"),
            ("get", "/posts"),
            ("get", "/users/{id}/posts"),
            ("get", "/posts/{id}/comments"),
            ("get", "/links/{code}/visits"),
            ("get", "/ledger/events"),
            ("post", "/auth/password-reset/confirm"),
            ("get", "/auth/oidc/callback"),
        ],
    ),
    (rules::REDIRECT_TARGETS, &[("get", "/auth/oidc/start")]),
    (rules::WEBHOOK_TARGET, &[("post", "/webhooks")]),
    (rules::BULK_CSV, &[("post", "/links/bulk")]),
    (rules::BULK_PARTIAL, &[("post", "/links/bulk")]),
    (
        rules::BALANCE_LIMITS,
        &[("post", "/accounts/{id}/deposits"), ("post", "/transfers")],
    ),
    (
        rules::TEXT_CONTENT,
        &[
            ("post", "/shorten"),
            ("post", "/links/bulk"),
            ("patch", "/links/{code}"),
            ("post", "/posts"),
            ("put", "/posts/{id}"),
            ("patch", "/posts/{id}"),
            ("post", "/posts/{id}/comments"),
            ("put", "/comments/{id}"),
            ("patch", "/comments/{id}"),
        ],
    ),
];

/// A string schema with a pattern, lengths and a description.
fn string(
    pattern: &str,
    min: Option<usize>,
    max: Option<usize>,
    description: &str,
) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .min_length(min)
        .max_length(max)
        .description(Some(description))
        .into()
}

macro_rules! documented_string {
    ($(#[$meta:meta])* $name:ident, $pattern:expr, $min:expr, $max:expr, $description:expr) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string($pattern, $min, $max, $description)
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

documented_string!(
    /// A host name such as `links.example.com` (no scheme, port or path).
    HostName,
    HOST_NAME_PATTERN,
    Some(1),
    Some(253),
    "A host name such as links.example.com (no scheme, port or path)"
);
documented_string!(
    /// The cursor of a list ordered by id.
    IdCursor,
    ID_CURSOR_PATTERN,
    Some(1),
    Some(18),
    "The nextCursor of the previous page (an id)"
);
documented_string!(
    /// An opaque page cursor.
    PageCursor,
    TOKEN_CURSOR_PATTERN,
    Some(1),
    Some(4096),
    "The nextCursor of the previous page of the same list and order (opaque)"
);
documented_string!(
    /// A ledger account as a transfer names it: `42` at this bank, `participant:42` at another.
    LedgerAccount,
    "^([a-z0-9_-]{1,32}:)?[1-9][0-9]{0,17}$",
    Some(1),
    Some(51),
    "An account id of this bank, or participant:id"
);
documented_string!(
    /// An account id (the cursor of the account list is one).
    AccountId,
    USER_CURSOR_PATTERN,
    Some(32),
    Some(32),
    "An account id"
);
documented_string!(
    /// A token or code handed over by a provider or mail: visible ASCII.
    Token,
    TOKEN_PATTERN,
    Some(1),
    Some(4096),
    "A token or code as issued"
);
documented_string!(
    /// The `If-Match` header.
    EntityTags,
    IF_MATCH_PATTERN,
    Some(1),
    None,
    "The ETag you read (or `*`); a value that is not a list of entity tags is refused with 400"
);
documented_string!(
    /// A display name.
    DisplayName,
    NAME_PATTERN,
    Some(1),
    Some(100),
    "1 to 100 characters, no control characters"
);
documented_string!(
    /// A post's title.
    Title,
    TITLE_PATTERN,
    Some(1),
    Some(200),
    "1 to 200 characters, no control characters"
);
documented_string!(
    /// A post's category or tag.
    Label,
    LABEL_PATTERN,
    Some(1),
    Some(40),
    "1 to 40 letters, digits and '-' (stored lower-case)"
);
documented_string!(
    /// A link's tag.
    LinkTag,
    LINK_TAG_PATTERN,
    Some(1),
    Some(50),
    "1 to 50 letters, digits, spaces and - _ . : (stored lower-case)"
);
documented_string!(
    /// A ledger feed position.
    FeedPosition,
    FEED_POSITION_PATTERN,
    Some(3),
    Some(37),
    "A position (tx.seq) from a previous page's next"
);
documented_string!(
    /// Where a sign-in ends.
    RedirectTarget,
    REDIRECT_PATTERN,
    Some(1),
    None,
    "A path on this server, or an absolute URL on its origin or the allowlist"
);

/// A string schema that takes one of `values`.
fn one_of(values: impl IntoIterator<Item = &'static str>, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .description(Some(description))
        .into()
}

macro_rules! documented_enum {
    ($(#[$meta:meta])* $name:ident, $values:expr, $description:expr) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                one_of($values, $description)
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

documented_enum!(
    /// What an API key may do.
    KeyScope,
    basis_auth::role::Scope::ALL.map(basis_auth::role::Scope::as_str),
    "A scope of an API key"
);
documented_enum!(
    /// A role's name.
    RoleName,
    [Role::User, Role::Moderator, Role::Admin].map(Role::as_str),
    "A role"
);
documented_enum!(
    /// A link event a webhook can hear.
    WebhookEvent,
    crate::webhooks::EVENTS,
    "A link event"
);

/// The size of an avatar thumbnail: 64 or 256.
#[derive(Debug)]
pub struct AvatarSize;

impl PartialSchema for AvatarSize {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .enum_values(Some([64, 256]))
            .description(Some("64 or 256 pixels"))
            .into()
    }
}

impl ToSchema for AvatarSize {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("AvatarSize")
    }
}

/// The schemas above, for the document's components.
pub fn components() -> Vec<(String, RefOr<Schema>)> {
    fn entry<T: ToSchema>() -> (String, RefOr<Schema>) {
        (T::name().into_owned(), T::schema())
    }
    vec![
        entry::<HostName>(),
        entry::<IdCursor>(),
        entry::<PageCursor>(),
        entry::<AccountId>(),
        entry::<LedgerAccount>(),
        entry::<Token>(),
        entry::<AvatarSize>(),
        entry::<KeyScope>(),
        entry::<RoleName>(),
        entry::<WebhookEvent>(),
        entry::<EntityTags>(),
        entry::<DisplayName>(),
        entry::<Title>(),
        entry::<Label>(),
        entry::<LinkTag>(),
        entry::<FeedPosition>(),
        entry::<RedirectTarget>(),
    ]
}
