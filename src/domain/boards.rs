//! A class's Service Board and its New and Closed statuses are one choice: statuses belong to a
//! board, so a status inherited from another policy was picked for that policy's board. A policy
//! that sets a class's board therefore sets both statuses with it.

use super::FieldError;
use super::catalog::EVENT_CLASSES;
use super::policy::SettingValue;
use super::resolve::{Resolution, Source};
use std::collections::BTreeMap;

const STATUS_LEAVES: [&str; 2] = ["new_status", "closed_status"];

/// The rule on one policy's own values (`after`), for the classes whose board or statuses this
/// save touches (`before` → `after`), so older policies stay editable. `resolution` is the
/// policy's resolved view after the save; it names the inherited statuses. Errors name
/// `prefix` + the status path.
pub fn check_statuses_with_board(
    before: &BTreeMap<String, SettingValue>,
    after: &BTreeMap<String, SettingValue>,
    resolution: &Resolution,
    prefix: &str,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for class in EVENT_CLASSES {
        let path = |leaf: &str| format!("ticketing.events.{}.{leaf}", class.key);
        let board = path("service_board");
        if !after.contains_key(&board) {
            continue;
        }
        let touched = std::iter::once(board.clone())
            .chain(STATUS_LEAVES.iter().map(|leaf| path(leaf)))
            .any(|p| before.get(&p) != after.get(&p));
        if !touched {
            continue;
        }
        for leaf in STATUS_LEAVES {
            let status = path(leaf);
            if after.contains_key(&status) {
                continue;
            }
            let inherited = resolution.get(&status).and_then(|field| {
                let name = match &field.value {
                    Some(SettingValue::Plain(v)) => v.get("name")?.as_str()?.to_owned(),
                    _ => return None,
                };
                match &field.source {
                    Some(Source::Policy(policy)) => Some(format!(
                        " (it would inherit “{name}” from policy “{}”, a status of that policy's board)",
                        policy.name
                    )),
                    _ => None,
                }
            });
            errors.push(FieldError::new(
                format!("{prefix}{status}"),
                "status_without_board",
                format!(
                    "this policy sets the Service Board of {}, so it sets this status with it{}",
                    class.display_name,
                    inherited.unwrap_or_default()
                ),
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(pairs: &[(&str, serde_json::Value)]) -> BTreeMap<String, SettingValue> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), SettingValue::Plain(v.clone())))
            .collect()
    }

    const BOARD: &str = "ticketing.events.failed_backup.service_board";
    const NEW: &str = "ticketing.events.failed_backup.new_status";
    const CLOSED: &str = "ticketing.events.failed_backup.closed_status";

    #[test]
    fn a_board_without_its_statuses_names_both() {
        let after = values(&[(BOARD, json!({"id": 2, "name": "Escalations"}))]);
        let errors = check_statuses_with_board(&BTreeMap::new(), &after, &Resolution::new(), "set.");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, [format!("set.{NEW}"), format!("set.{CLOSED}")]);
    }

    #[test]
    fn a_board_with_both_statuses_or_an_untouched_class_passes() {
        let full = values(&[
            (BOARD, json!({"id": 2, "name": "Escalations"})),
            (NEW, json!({"id": 20, "name": "New"})),
            (CLOSED, json!({"id": 29, "name": "Closed"})),
        ]);
        assert!(check_statuses_with_board(&BTreeMap::new(), &full, &Resolution::new(), "").is_empty());
        let legacy = values(&[(BOARD, json!({"id": 2, "name": "Escalations"}))]);
        assert!(check_statuses_with_board(&legacy, &legacy, &Resolution::new(), "").is_empty());
    }
}
