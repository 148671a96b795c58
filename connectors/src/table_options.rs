//! Checks of a table's WITH options shared by the connectors.

use std::collections::BTreeMap;

use crate::error::{ConnectorError, Result};

/// Checks that every key of `options` is in `accepted`, and that `connector` and `format`
/// (when given) have the expected values. `role` ("source" or "sink") is for messages.
pub fn check_options(
    table: &str,
    options: &BTreeMap<String, String>,
    connector: &str,
    role: &str,
    accepted: &[&str],
) -> Result<()> {
    for (key, value) in options {
        if !accepted.contains(&key.as_str()) {
            return Err(ConnectorError::config(
                table,
                format!(
                    "unknown option '{key}' for a '{connector}' {role} (accepted: {})",
                    accepted.join(", ")
                ),
            ));
        }
        let expected = match key.as_str() {
            "connector" => connector,
            "format" => "json",
            _ => continue,
        };
        if !value.trim().eq_ignore_ascii_case(expected) {
            return Err(ConnectorError::config(
                table,
                format!("option '{key}' = '{value}' is not supported here (accepted: {expected})"),
            ));
        }
    }
    Ok(())
}
