//! One module per provider, each with the same small surface: `parse(input)` returning
//! the request's events. The modules and the one `match` are declared from
//! `mailpipe_model::for_each_provider!`: a new provider's module is its file here, nothing
//! else (the compiler asks for the file and its `parse`).

use mailpipe_model::{EmailEvent, Provider};

use crate::error::ParseError;
use crate::input::ParseInput;

/// The provider modules and the `match` from provider to module, from the one list.
macro_rules! providers {
    ($($module:ident $variant:ident $id:literal,)*) => {
        $(mod $module;)*

        pub(crate) fn parse(
            provider: Provider,
            input: &ParseInput<'_>,
        ) -> Result<Vec<EmailEvent>, ParseError> {
            match provider {
                $(Provider::$variant => $module::parse(input),)*
            }
        }
    };
}

mailpipe_model::for_each_provider!(providers);
