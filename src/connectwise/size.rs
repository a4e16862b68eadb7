//! What ConnectWise answers cost in memory, and a JSON parser that stops when an answer would
//! cost more than a request may use. A JSON text can take many times its own size once parsed
//! (`[{"":0},…]` turns 7 bytes into a map node of about 600), so the cost is counted while
//! parsing, not after.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;
use std::mem::size_of;

const VALUE: usize = size_of::<Value>();
const STRING: usize = size_of::<String>();
/// A map's first node: room for eleven keys and values (the B-tree's node size).
const MAP_NODE: usize = 11 * (STRING + VALUE) + 16;

/// The estimated bytes `value` holds: every value, the spare room of growing arrays, strings,
/// keys and map nodes.
pub fn approx_size(value: &Value) -> usize {
    VALUE
        + match value {
            Value::String(text) => text.len(),
            Value::Array(items) => items.iter().map(|item| VALUE + approx_size(item)).sum(),
            Value::Object(map) if map.is_empty() => 0,
            Value::Object(map) => {
                MAP_NODE
                    + map
                        .iter()
                        .map(|(key, item)| 2 * STRING + key.len() + approx_size(item))
                        .sum::<usize>()
            }
            _ => 0,
        }
}

/// The estimated bytes `value` holds as an element of an array (its slot included).
pub fn item_size(value: &Value) -> usize {
    VALUE + approx_size(value)
}

/// The memory one request may use, charged as answers stream in and are parsed and kept.
#[derive(Debug)]
pub struct Meter {
    limit: usize,
    used: usize,
    exceeded: bool,
}

impl Meter {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: 0,
            exceeded: false,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Adds `bytes`; false (and remembered) once the total passes the limit.
    pub fn charge(&mut self, bytes: usize) -> bool {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            self.exceeded = true;
        }
        !self.exceeded
    }

    /// Gives back what was charged for something now dropped.
    pub fn refund(&mut self, bytes: usize) {
        self.used = self.used.saturating_sub(bytes);
    }

    pub fn used(&self) -> usize {
        self.used
    }
}

/// Why an answer could not be parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Parsing it would pass the meter's limit.
    TooLarge,
    NotJson,
}

/// Parses `body` as JSON, charging every value to `meter` as it is built.
pub fn parse_metered(body: &[u8], meter: &mut Meter) -> Result<Value, ParseError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = Metered { meter: &mut *meter }
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    match parsed {
        Ok(value) => Ok(value),
        Err(_) if meter.exceeded => Err(ParseError::TooLarge),
        Err(_) => Err(ParseError::NotJson),
    }
}

struct Metered<'a> {
    meter: &'a mut Meter,
}

impl Metered<'_> {
    fn charge<E: de::Error>(&mut self, bytes: usize) -> Result<(), E> {
        if self.meter.charge(bytes) {
            Ok(())
        } else {
            Err(E::custom("the answer is too large"))
        }
    }

    fn child(&mut self) -> Metered<'_> {
        Metered {
            meter: &mut *self.meter,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Metered<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Metered<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<Value, E> {
        self.charge(VALUE)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<Value, E> {
        self.charge(VALUE)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<Value, E> {
        self.charge(VALUE)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<Value, E> {
        self.charge(VALUE)?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<Value, E> {
        self.charge(VALUE + v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<Value, E> {
        self.charge(VALUE)?;
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        self.charge(VALUE)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child())? {
            // The element's own cost was charged inside; this is its slot's spare room.
            self.charge(VALUE)?;
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut access: A) -> Result<Value, A::Error> {
        self.charge(VALUE)?;
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let node = if map.is_empty() { MAP_NODE } else { 0 };
            self.charge(node + 2 * STRING + key.len())?;
            let item = access.next_value_seed(self.child())?;
            map.insert(key, item);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parsing_charges_what_approx_size_estimates() {
        let value = json!({"id": 1, "name": "Acme", "tags": ["a", "b"], "x": {"y": null}, "n": -2.5, "ok": true, "e": {}});
        let text = serde_json::to_vec(&value).unwrap();
        let mut meter = Meter::new(usize::MAX);
        assert_eq!(parse_metered(&text, &mut meter), Ok(value.clone()));
        assert_eq!(meter.used(), approx_size(&value));
    }

    #[test]
    fn an_answer_that_would_cost_too_much_stops_parsing() {
        // 7 bytes of text each, about 600 bytes of memory each.
        let text = format!("[{}{{\"\":0}}]", "{\"\":0},".repeat(10_000));
        let mut meter = Meter::new(1024 * 1024);
        assert_eq!(
            parse_metered(text.as_bytes(), &mut meter),
            Err(ParseError::TooLarge)
        );
        assert!(text.len() < 100_000, "a small text, refused for its parsed size");
        let mut meter = Meter::new(1024 * 1024);
        assert_eq!(parse_metered(b"{\"a\":", &mut meter), Err(ParseError::NotJson));
    }

    #[test]
    fn the_meter_counts_charges_and_refunds() {
        let mut meter = Meter::new(10);
        assert!(meter.charge(6));
        meter.refund(6);
        assert!(meter.charge(10));
        assert!(!meter.charge(1));
        assert_eq!(meter.limit(), 10);
    }
}
