//! Errors raised while validating model configurations.

/// A configuration that cannot describe a network we can build.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A field holds a value outside what the network supports.
    #[error("config field `{field}`: {message}")]
    Invalid { field: String, message: String },
    /// The JSON text is not a valid config of the expected kind.
    #[error("config is not valid JSON for {kind}: {source}")]
    Json {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl ConfigError {
    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.to_string(), message: message.into() }
    }
}
