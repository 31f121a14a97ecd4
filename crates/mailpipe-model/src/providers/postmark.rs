//! The shared facts about Postmark (see `crate::spec`).

use crate::spec::{ProviderSpec, SHARED_SECRET};

pub(crate) const SPEC: ProviderSpec = SHARED_SECRET;
