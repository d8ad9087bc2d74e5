//! The front-ends panel: every front-end of the cluster, up or down, the leader it
//! follows, its cache and lease, and its traffic since the last poll.

use std::fmt::Write as _;

use super::charts::format_value;
use super::{epoch_word, Esc};
use common::wire::Replication;

use crate::monitor::FrontendRow;

pub(super) fn frontends(rows: &[FrontendRow], mode: Replication) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<table><thead><tr><th>front-end</th><th>address</th><th>follows</th><th>cache</th>\
         <th>lease</th><th>lookups/s</th><th>orders/s</th></tr></thead><tbody>"
    );
    for row in rows {
        let name = Esc(&row.name);
        let this = if row.this { " this" } else { "" };
        let address = row
            .url
            .as_deref()
            .map_or_else(|| "this page".to_string(), |url| Esc(url).to_string());
        let Some(h) = &row.health else {
            let _ = write!(
                out,
                "<tr data-frontend=\"{name}\" class=\"down{this}\"><td>{name}</td>\
                 <td>{address}</td><td colspan=\"5\">down: not answering</td></tr>"
            );
            continue;
        };
        let follows = match (h.leader, h.epoch) {
            (Some(id), Some(epoch)) => format!("order{id} ({} {epoch})", epoch_word(mode)),
            _ => "<strong>no leader</strong>".to_string(),
        };
        let cache = if h.cache.enabled {
            format!("{} of {}", h.cache.size, h.cache.capacity)
        } else {
            "off".to_string()
        };
        let lease = if !h.cache.enabled {
            "–"
        } else if h.cache.leased {
            "held"
        } else {
            "<strong>expired</strong>"
        };
        let rate = |v: Option<f64>| v.map_or("–".to_string(), |v| format_value(v, ""));
        let _ = write!(
            out,
            "<tr data-frontend=\"{name}\" class=\"up{this}\"><td>{name}</td><td>{address}</td>\
             <td>{follows}</td><td>{cache}</td><td>{lease}</td><td>{}</td><td>{}</td></tr>",
            rate(row.rates.lookups_per_s),
            rate(row.rates.orders_per_s),
        );
    }
    out.push_str("</tbody></table>");
    out
}
