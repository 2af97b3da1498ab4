//! The page frame every console page shares, and the small pieces of HTML the pages
//! repeat: escaping, state badges, role-gated action buttons.

use std::fmt::Write as _;

use axum::response::Html;

pub(super) use crate::output::escape_html as esc;
use crate::view::{IdentityView, RunState, StopAllView, Time};

/// Roles from least to most; an action needs at least its role.
const ROLES: [&str; 4] = ["viewer", "responder", "owner", "admin"];

/// What the page knows about the operator, for the header and the action buttons.
pub(super) struct Frame<'a> {
    /// The page's title.
    pub(super) title: &'a str,
    /// Who the control plane says the operator is.
    pub(super) identity: &'a IdentityView,
    /// This start's CSRF token.
    pub(super) csrf: &'a str,
    /// The stop-all flag, shown as a banner on every page while it is active.
    pub(super) stop_all: Option<&'a StopAllView>,
}

impl Frame<'_> {
    /// The whole page around `main` (already HTML). `main_attributes` go on `<main>`
    /// (the script reads them: what to follow live, what to refresh).
    pub(super) fn page(&self, main_attributes: &str, main: &str) -> Html<String> {
        let mut page = String::with_capacity(main.len() + 2048);
        let who = if self.identity.insecure_dev {
            format!(
                "<b>{}</b> (the control plane authenticates nobody: --insecure-dev)",
                esc(&self.identity.name)
            )
        } else {
            let covers = if self.identity.programs.is_empty() {
                String::new()
            } else {
                format!(" for {}", esc(&self.identity.programs.join(", ")))
            };
            format!(
                "<b>{}</b>, role <b id=\"role\">{}</b>{covers}",
                esc(&self.identity.name),
                esc(&self.identity.role)
            )
        };
        let _ = write!(
            page,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <meta name=\"csrf-token\" content=\"{}\">\
             <title>{} · Killswitch</title>\
             <link rel=\"stylesheet\" href=\"/assets/console.css\">\
             <script src=\"/assets/console.js\" defer></script></head>\n<body>\
             <a class=\"skip\" href=\"#main\">Skip to content</a>\
             <header><nav aria-label=\"Console\"><a class=\"brand\" href=\"/\">Killswitch</a> \
             <a href=\"/\">Programs</a> <a href=\"/audit\">Audit log</a> \
             <a href=\"/report\">Reports</a></nav>\
             <p class=\"who\">Acting as {who}</p></header>\n",
            esc(self.csrf),
            esc(self.title),
        );
        if let Some(flag) = self.stop_all.filter(|flag| flag.active) {
            page.push_str(&stop_all_banner(flag));
        }
        let _ = write!(
            page,
            "<main id=\"main\" tabindex=\"-1\" {main_attributes}>{main}</main>\n\
             <div id=\"toast\" role=\"status\" aria-live=\"polite\"></div>\n</body></html>\n"
        );
        Html(page)
    }

    /// Whether the operator's role allows an action needing `role` (on `program`).
    fn allows(&self, role: &str, program: Option<&str>) -> Result<(), String> {
        let rank = |r: &str| ROLES.iter().position(|known| *known == r);
        if rank(&self.identity.role) < rank(role) {
            return Err(format!(
                "needs role {role} (you are {})",
                self.identity.role
            ));
        }
        match program {
            Some(program)
                if !self.identity.programs.is_empty()
                    && !self.identity.programs.iter().any(|p| p == program) =>
            {
                Err(format!("{program} is not one of your programs"))
            }
            _ => Ok(()),
        }
    }

    /// A button that opens the dialog `dialog`, enabled when the role allows the action;
    /// otherwise disabled, with the role it needs next to it.
    pub(super) fn action_button(
        &self,
        dialog: &str,
        label: &str,
        role: &str,
        program: Option<&str>,
    ) -> String {
        match self.allows(role, program) {
            Ok(()) => format!(
                "<button type=\"button\" id=\"{dialog}-button\" data-dialog=\"{dialog}\">{}</button>",
                esc(label)
            ),
            Err(why) => format!(
                "<span class=\"gated\"><button type=\"button\" id=\"{dialog}-button\" disabled \
                 aria-describedby=\"{dialog}-needs\" data-needs=\"{role}\">{}</button> \
                 <small id=\"{dialog}-needs\" class=\"needs\">{}</small></span>",
                esc(label),
                esc(&why)
            ),
        }
    }
}

/// The banner every page shows while a stop-all is in force.
fn stop_all_banner(flag: &StopAllView) -> String {
    format!(
        "<div class=\"banner\" role=\"alert\" id=\"stop-all-banner\"><b>STOP-ALL in force</b>: \
         every program is paused for every collector until an admin clears it. {} by {}{}{}.</div>\n",
        esc(&flag.reason),
        esc(&flag.actor),
        flag.at
            .map(|at| format!(" at {}", when(at)))
            .unwrap_or_default(),
        if flag.incident_id.is_empty() {
            String::new()
        } else {
            format!(", incident {}", esc(&flag.incident_id))
        }
    )
}

/// A run state as a badge the stylesheet colours (and a screen reader reads as text).
pub(super) fn badge(state: RunState) -> String {
    let text = state.as_str();
    format!(
        "<span class=\"badge {}\" data-field=\"state\">{text}</span>",
        text.to_ascii_lowercase()
    )
}

/// A time as the CLI prints it.
pub(super) fn when(at: Time) -> String {
    esc(&at.to_string())
}

/// A standalone page with one message (errors, refusals).
pub(super) fn message_page(title: &str, message: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · Killswitch</title><link rel=\"stylesheet\" href=\"/assets/console.css\">\
         </head><body><main id=\"main\"><h1>{}</h1><p class=\"error\" role=\"alert\">{}</p>\
         <p><a href=\"/\">Back to the programs</a></p></main></body></html>\n",
        esc(title),
        esc(title),
        esc(message)
    ))
}

/// Percent-encodes a query parameter or path segment.
pub(super) fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn identity(role: &str, programs: &[&str]) -> IdentityView {
        IdentityView {
            name: "bob".into(),
            role: role.into(),
            programs: programs.iter().map(|p| (*p).to_owned()).collect(),
            signing_required: false,
            insecure_dev: false,
        }
    }

    #[test]
    fn buttons_follow_the_role() {
        let bob = identity("responder", &[]);
        let frame = Frame {
            title: "t",
            identity: &bob,
            csrf: "c",
            stop_all: None,
        };
        let pause = frame.action_button("pause", "Pause…", "responder", Some("demo"));
        assert!(!pause.contains("disabled"), "{pause}");
        let resume = frame.action_button("resume", "Resume…", "owner", Some("demo"));
        assert!(resume.contains("disabled"), "{resume}");
        assert!(
            resume.contains("needs role owner (you are responder)"),
            "{resume}"
        );

        let carol = identity("owner", &["other"]);
        let frame = Frame {
            identity: &carol,
            ..frame
        };
        let resume = frame.action_button("resume", "Resume…", "owner", Some("demo"));
        assert!(
            resume.contains("demo is not one of your programs"),
            "{resume}"
        );
    }

    #[test]
    fn encoding() {
        assert_eq!(url_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(esc("<a href=\"x\">'"), "&lt;a href=&quot;x&quot;&gt;&#39;");
    }
}
