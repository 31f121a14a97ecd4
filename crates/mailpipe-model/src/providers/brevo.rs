//! The shared facts about Brevo (see `crate::spec`).

use crate::spec::{ProviderSpec, SHARED_SECRET};

pub(crate) const SPEC: ProviderSpec = SHARED_SECRET;
