//! One file per provider: its [`crate::ProviderSpec`], the facts about it that more than
//! one crate reads. The modules are declared from the one list (`for_each_provider!`).

macro_rules! declare {
    ($($module:ident $variant:ident $id:literal,)*) => {
        $(pub(crate) mod $module;)*
    };
}

crate::for_each_provider!(declare);
