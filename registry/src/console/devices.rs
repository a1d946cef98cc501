//! The devices grid: every device the committed discovery files describe
//! (the admin API's list), each with its latest thumbnail, name, make,
//! position and the time of that thumbnail.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::Html;
use serde_json::Value;

use super::auth::PageSession;
use super::html::{self, Nav, esc, url_part};
use super::{Console, Refusal};
use crate::{admin, store};

/// A device as the grid shows it.
struct Card {
    device: Value,
    thumbnail: Option<(String, i64)>,
}

impl Card {
    fn text(&self, field: &str) -> String {
        match self.device.get(field) {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Null) | None => String::new(),
            // Coordinates as a person reads them (binary floats print noise).
            Some(Value::Number(number)) if !number.is_i64() && !number.is_u64() => {
                let text = format!("{:.6}", number.as_f64().unwrap_or_default());
                text.trim_end_matches('0').trim_end_matches('.').to_string()
            }
            Some(other) => other.to_string(),
        }
    }

    fn html(&self) -> String {
        let id = self.text("deviceId");
        let name = self.text("name");
        let shown_name = if name.is_empty() { id.clone() } else { name };
        let image = match &self.thumbnail {
            Some((file_id, _)) => format!(
                r#"<img class="thumbnail" src="/console/files/{}" alt="Latest thumbnail of {}" width="320" height="180">"#,
                url_part(file_id),
                esc(&shown_name)
            ),
            None => r#"<div class="thumbnail none">no thumbnail yet</div>"#.to_string(),
        };
        let mut facts = String::new();
        let make = [self.text("manufacturer"), self.text("model")]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !make.is_empty() {
            let _ = write!(facts, r#"<p class="make">{}</p>"#, esc(&make));
        }
        let (latitude, longitude) = (self.text("latitude"), self.text("longitude"));
        if !latitude.is_empty() || !longitude.is_empty() {
            let _ = write!(
                facts,
                r#"<p class="position">{}, {}</p>"#,
                esc(&latitude),
                esc(&longitude)
            );
        }
        let when = match &self.thumbnail {
            Some((_, at_ms)) => format!("thumbnail {}", html::time(*at_ms)),
            None => String::new(),
        };
        format!(
            r#"<article class="device" data-device-id="{id}">
{image}
<h2 class="name">{name}</h2>
<p class="device-id"><code>{id}</code></p>
{facts}<p class="thumbnail-time">{when}</p>
</article>"#,
            id = esc(&id),
            name = esc(&shown_name),
            when = esc(&when),
        )
    }
}

/// `/console/devices`.
pub async fn devices_page(
    State(console): State<Console>,
    PageSession(session): PageSession,
) -> Result<Html<String>, Refusal> {
    let store = console.registry().store().clone();
    let cards = console
        .registry()
        .store()
        .transaction(move |tx| {
            let mut cards = Vec::new();
            for device in admin::devices(&store, tx)? {
                let thumbnail = match &device.thumbnail_file_id {
                    Some(file_id) => {
                        store::file(tx, file_id)?.map(|file| (file.file_id, file.created_ms))
                    }
                    None => None,
                };
                cards.push(Card {
                    device: device.device,
                    thumbnail,
                });
            }
            Ok(cards)
        })
        .await?;
    let grid: String = cards.iter().map(Card::html).collect();
    let body = if cards.is_empty() {
        r#"<h1>Devices</h1><p class="hint">No device yet: post a discovery job from the jobs page.</p>"#
            .to_string()
    } else {
        format!(
            r#"<h1>Devices</h1><p class="hint">{} devices from discovery, each with its latest thumbnail.</p>
<div class="grid" id="devices">{grid}</div>"#,
            cards.len()
        )
    };
    Ok(Html(html::layout(
        "Devices",
        Some(Nav::Devices),
        Some(&session.csrf),
        &body,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_print_without_float_noise() {
        let card = Card {
            device: serde_json::json!({"latitude": 45.5027, "longitude": -73.56830000000001, "n": 3}),
            thumbnail: None,
        };
        assert_eq!(card.text("latitude"), "45.5027");
        assert_eq!(card.text("longitude"), "-73.5683");
        assert_eq!(card.text("n"), "3");
    }
}
