//! The email templates: `templates/email/<message>/{subject,text,html}.hbs`
//! and the HTML layout, compiled once when the Mailer starts, in strict mode
//! so that a missing value is an error and never an empty link.

use handlebars::Handlebars;
use rust_embed::RustEmbed;
use serde_json::Value;

/// Embedded in release builds, read from disk in debug builds.
#[derive(RustEmbed)]
#[folder = "../templates/email/"]
#[include = "*.hbs"]
struct EmailTemplates;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("email template error: {0}")]
    Compile(#[from] Box<handlebars::TemplateError>),
    #[error("no email templates for message {0:?}")]
    UnknownMessage(String),
    #[error("the data of {message} must be a JSON object")]
    NotAnObject { message: String },
    #[error("cannot render {template}: {source}")]
    Render {
        template: String,
        source: Box<handlebars::RenderError>,
    },
}

/// One email, rendered: what every backend sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The compiled templates, and the values every email gets besides its own.
pub struct MailTemplates {
    /// Subject and text parts: plain text, nothing escaped.
    plain: Handlebars<'static>,
    /// HTML parts: every value HTML-escaped.
    html: Handlebars<'static>,
    site_name: String,
    site_url: String,
}

impl MailTemplates {
    pub fn compile(site_name: &str, site_url: &str) -> Result<MailTemplates, TemplateError> {
        let mut plain = registry()?;
        plain.register_escape_fn(handlebars::no_escape);
        Ok(MailTemplates {
            plain,
            html: registry()?,
            site_name: site_name.to_owned(),
            site_url: site_url.to_owned(),
        })
    }

    /// Subject, text and HTML of `message` with `data` plus `site_name` and
    /// `site_url`.
    pub fn render(&self, message: &str, data: &Value) -> Result<RenderedEmail, TemplateError> {
        if !self.plain.has_template(&format!("{message}/subject")) {
            return Err(TemplateError::UnknownMessage(message.to_owned()));
        }
        let mut data = match data {
            Value::Object(map) => map.clone(),
            _ => {
                return Err(TemplateError::NotAnObject {
                    message: message.to_owned(),
                })
            }
        };
        data.insert("site_name".to_owned(), Value::from(self.site_name.as_str()));
        data.insert("site_url".to_owned(), Value::from(self.site_url.as_str()));
        let mut data = Value::Object(data);
        // A subject is one line, whatever the template's line breaks.
        let subject = render(&self.plain, &format!("{message}/subject"), &data)?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let text = render(&self.plain, &format!("{message}/text"), &data)?;
        data["subject"] = Value::from(subject.as_str());
        let html = render(&self.html, &format!("{message}/html"), &data)?;
        Ok(RenderedEmail { subject, text, html })
    }
}

fn registry() -> Result<Handlebars<'static>, TemplateError> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry
        .register_embed_templates_with_extension::<EmailTemplates>(".hbs")
        .map_err(|e| TemplateError::Compile(Box::new(e)))?;
    Ok(registry)
}

fn render(registry: &Handlebars<'static>, template: &str, data: &Value) -> Result<String, TemplateError> {
    registry
        .render(template, data)
        .map_err(|e| TemplateError::Render {
            template: template.to_owned(),
            source: Box::new(e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn templates() -> MailTemplates {
        MailTemplates::compile("Lectern", "https://lectern.example").unwrap()
    }

    #[test]
    fn a_missing_value_is_an_error_not_an_empty_link() {
        let error = templates()
            .render("password_reset", &json!({ "name": "Ada", "minutes": 30 }))
            .unwrap_err();
        assert!(matches!(error, TemplateError::Render { .. }), "{error}");
    }

    #[test]
    fn an_unknown_message_is_refused() {
        let error = templates().render("newsletter", &json!({})).unwrap_err();
        assert!(matches!(error, TemplateError::UnknownMessage(_)), "{error}");
    }

    #[test]
    fn html_escapes_values_and_text_keeps_them() {
        let email = templates()
            .render(
                "email_changed",
                &json!({ "name": "<b>Ada</b> & co", "old_email": "a@example.org", "new_email": "b@example.org" }),
            )
            .unwrap();
        assert!(email.html.contains("Hello &lt;b&gt;Ada&lt;/b&gt; &amp; co,"));
        assert!(email.text.starts_with("Hello <b>Ada</b> & co,"));
    }

    #[test]
    fn an_empty_name_says_hello() {
        let email = templates()
            .render(
                "welcome",
                &json!({ "name": "", "site_url": "https://lectern.example" }),
            )
            .unwrap();
        assert!(email.text.starts_with("Hello,\n"));
        assert!(email.html.contains("<p>Hello,</p>"));
    }
}
