//! Write postern mail-policy modules in Rust: one `impl` of [`Policy`], one [`export_policy!`].
//!
//! The relay hands a module each [`Message`] with its configuration string and expects the
//! recipients sorted into [`Group`]s, each with a [`Decision`] about the journal copy. Every
//! message is evaluated in a fresh instance, so nothing a module keeps in memory survives to the
//! next message. The helpers cover what nearly every policy needs: [`Address`] parsing,
//! gateway-style [`Pattern`]s, header lookup on [`Message`], grouping with [`Groups`], and
//! logging through the relay with [`log`].
//!
//! ```
//! use postern_guest_sdk::{Decision, Group, Groups, Message, Pattern, Policy};
//!
//! struct Sales;
//!
//! impl Policy for Sales {
//!     fn evaluate(message: &Message, _config: &str) -> Result<Vec<Group>, String> {
//!         let sales = Pattern::parse("@sales.example.com").expect("a valid pattern");
//!         let mut groups = Groups::new();
//!         for (index, recipient) in message.recipients().iter().enumerate() {
//!             if sales.matches_str(recipient) {
//!                 groups.add("SALES", Decision::DefaultIntake, index);
//!             } else {
//!                 groups.add("DEFAULT", Decision::NoScan, index);
//!             }
//!         }
//!         Ok(groups.into_vec())
//!     }
//! }
//!
//! // In the policy crate (a `cdylib` built for `wasm32-wasip2`):
//! postern_guest_sdk::export_policy!(Sales);
//!
//! let message = Message::new("a@example.org", ["b@sales.example.com", "c@example.com"]);
//! let groups = Sales::evaluate(&message, "").unwrap();
//! assert_eq!(groups[0].policy, "SALES");
//! assert_eq!(groups[1].recipients, [1]);
//! ```

#![deny(missing_docs)]

// The generated bindings name this crate by its absolute path, which must work inside it too.
extern crate self as postern_guest_sdk;

mod address;
mod message;
mod pattern;

pub use address::Address;
pub use message::{Decision, Direction, Group, Groups, Header, Message, TlsInfo};
pub use pattern::{Pattern, PatternError};

/// The generated bindings of the `postern:policy` world; use the typed wrappers instead.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    // SAFETY: the unsafe code here is wit-bindgen's generated canonical-ABI glue; this crate
    // writes none of its own.
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "::postern_guest_sdk::bindings",
        runtime_path: "::postern_guest_sdk::__private::wit_bindgen::rt",
    });
}

/// A mail policy: the one trait a module implements.
///
/// Both functions receive the configuration string the relay was given for the module. The
/// relay calls [`Policy::validate`] once when it loads the module (an error refuses the load and
/// is shown to the operator), then [`Policy::evaluate`] once per message.
///
/// ```
/// use postern_guest_sdk::{Decision, Group, Message, Policy};
///
/// struct ScanEverything;
///
/// impl Policy for ScanEverything {
///     fn validate(config: &str) -> Result<(), String> {
///         if config.is_empty() { Ok(()) } else { Err("takes no configuration".into()) }
///     }
///
///     fn evaluate(message: &Message, _config: &str) -> Result<Vec<Group>, String> {
///         Ok(vec![Group::all("DEFAULT", Decision::DefaultIntake, message)])
///     }
/// }
///
/// assert!(ScanEverything::validate("x").is_err());
/// ```
pub trait Policy {
    /// Checks the configuration; the default accepts anything.
    fn validate(config: &str) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// Sorts the message's recipients into groups. Every recipient index must appear in exactly
    /// one group. An error makes the relay apply its failure policy to the message.
    fn evaluate(message: &Message, config: &str) -> Result<Vec<Group>, String>;
}

/// Exports a [`Policy`] implementation as the module's `validate` and `evaluate`.
///
/// Use it once, at the top level of the policy crate:
///
/// ```
/// use postern_guest_sdk::{Decision, Group, Message, Policy};
///
/// struct NoScan;
///
/// impl Policy for NoScan {
///     fn evaluate(message: &Message, _config: &str) -> Result<Vec<Group>, String> {
///         Ok(vec![Group::all("DEFAULT", Decision::NoScan, message)])
///     }
/// }
///
/// postern_guest_sdk::export_policy!(NoScan);
/// ```
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        const _: () = {
            type __PosternPolicyExport = $crate::__private::Exporter<$policy>;
            $crate::bindings::__export_policy_world!(
                __PosternPolicyExport with_types_in $crate::bindings
            );
        };
    };
}

/// Support for [`export_policy!`]; not part of the public interface.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    use crate::bindings;
    use std::marker::PhantomData;

    /// Adapts a [`crate::Policy`] to the generated `Guest` trait.
    pub struct Exporter<P>(PhantomData<P>);

    impl<P: crate::Policy> bindings::Guest for Exporter<P> {
        fn validate(config: String) -> Result<(), String> {
            P::validate(&config)
        }

        fn evaluate(
            message: bindings::postern::policy::types::Message,
            config: String,
        ) -> Result<Vec<bindings::postern::policy::types::Group>, String> {
            let message = crate::Message::from_bindings(message);
            let groups = P::evaluate(&message, &config)?;
            Ok(groups
                .into_iter()
                .map(crate::Group::into_bindings)
                .collect())
        }
    }
}

/// Log lines that go to the relay's log, tagged with the module's name.
///
/// Keep them short: the relay cuts long lines. Outside a Wasm host (in native unit tests of a
/// policy) the lines go to standard error instead.
///
/// ```
/// postern_guest_sdk::log::info("matched SALES on the sender");
/// ```
pub mod log {
    use crate::bindings::postern::policy::log as wit;

    fn emit(level: wit::Level, message: &str) {
        #[cfg(target_family = "wasm")]
        wit::log(level, message);
        #[cfg(not(target_family = "wasm"))]
        eprintln!("[{level:?}] {message}");
    }

    /// Logs at debug level.
    ///
    /// ```
    /// postern_guest_sdk::log::debug("looking at the headers");
    /// ```
    pub fn debug(message: &str) {
        emit(wit::Level::Debug, message);
    }

    /// Logs at info level.
    ///
    /// ```
    /// postern_guest_sdk::log::info("using the sales table");
    /// ```
    pub fn info(message: &str) {
        emit(wit::Level::Info, message);
    }

    /// Logs at warning level.
    ///
    /// ```
    /// postern_guest_sdk::log::warn("no recipients matched, using DEFAULT");
    /// ```
    pub fn warn(message: &str) {
        emit(wit::Level::Warn, message);
    }

    /// Logs at error level.
    ///
    /// ```
    /// postern_guest_sdk::log::error("the configuration names no policies");
    /// ```
    pub fn error(message: &str) {
        emit(wit::Level::Error, message);
    }
}
