//! Typed identifiers, so a tenant id can never be passed where an operator id is expected.

use std::fmt;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id (UUIDv7), so ids double as a stable pagination order.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

id_type!(
    /// An MSP organisation. Every row of the system belongs to exactly one.
    TenantId
);
id_type!(
    /// A person who signs in to the operator API.
    OperatorId
);
id_type!(
    /// A policy: a named, versioned set of setting values in a tenant's tree.
    PolicyId
);
id_type!(
    /// An appliance or vault registered to a tenant.
    DeviceId
);
id_type!(
    /// A token devices register with.
    EnrollmentTokenId
);
id_type!(
    /// A known hardware id asking to register again, waiting for an operator.
    ReregistrationId
);
id_type!(
    /// An unpublished edit of a policy.
    DraftId
);
id_type!(
    /// A staged rollout of a draft.
    RolloutId
);
