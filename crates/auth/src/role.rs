//! Roles and API key scopes.

use std::fmt;
use std::str::FromStr;

/// What an account may do beyond its own resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A regular account: manages its own resources.
    User,
    /// May moderate content (posts, comments) of others.
    Moderator,
    /// May manage every account and resource, and read the audit log.
    Admin,
}

impl Role {
    /// The stored and transmitted name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }

    /// Whether this role includes the powers of `other` (admin ⊇ moderator ⊇ user).
    pub fn at_least(self, other: Role) -> bool {
        self >= other
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Role::User),
            "moderator" => Ok(Role::Moderator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected user, moderator or admin"
            )),
        }
    }
}

/// What an API key may do. A key acts for its owner but only within its scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Read the owner's links and their statistics.
    LinksRead,
    /// Create, change and delete the owner's links (implies reading them).
    LinksWrite,
    /// Read the owner's profile.
    ProfileRead,
}

impl Scope {
    /// Every scope, for documentation and validation messages.
    pub const ALL: [Scope; 3] = [Scope::LinksRead, Scope::LinksWrite, Scope::ProfileRead];

    /// The scope's name (`links:write`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::LinksRead => "links:read",
            Scope::LinksWrite => "links:write",
            Scope::ProfileRead => "profile:read",
        }
    }

    /// Whether holding `self` grants `wanted`.
    pub fn grants(self, wanted: Scope) -> bool {
        self == wanted || (self == Scope::LinksWrite && wanted == Scope::LinksRead)
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope {s:?}: expected one of {}", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_are_ordered() {
        for role in [Role::User, Role::Moderator, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!(Role::Admin.at_least(Role::Moderator));
        assert!(!Role::User.at_least(Role::Moderator));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn write_scopes_grant_reading() {
        assert!(Scope::LinksWrite.grants(Scope::LinksRead));
        assert!(!Scope::LinksRead.grants(Scope::LinksWrite));
        assert_eq!("links:write".parse::<Scope>().unwrap(), Scope::LinksWrite);
        assert!("links:*".parse::<Scope>().is_err());
    }
}
