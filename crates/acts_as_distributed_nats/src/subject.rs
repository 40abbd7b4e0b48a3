//! The subject each event is published on: `<prefix>.<Type>.<action>` by default, or a rule of
//! your own.

use acts_as_distributed::Event;
use std::fmt;
use std::sync::Arc;

/// The default subject prefix.
pub const DEFAULT_PREFIX: &str = "distributes";

/// A rule that gives an event's subject.
type Rule = Arc<dyn Fn(&Event) -> String + Send + Sync>;

/// Where an event goes: [`Subjects::prefix`] gives `<prefix>.<Type>.<action>` (such as
/// `distributes.User.create`); [`Subjects::custom`] any rule of your own. Subjects must stay under
/// [`filter`](Self::filter), the wildcard the stream and the stream consumer listen on.
///
/// ```
/// use acts_as_distributed::{Action, Event};
/// use acts_as_distributed_nats::Subjects;
///
/// let event = Event::new(1, "User", "u-1", Action::Create, serde_json::json!({}));
/// let subjects = Subjects::prefix("app.events");
/// assert_eq!(subjects.subject(&event).unwrap(), "app.events.User.create");
/// assert_eq!(subjects.filter(), "app.events.>");
/// ```
#[derive(Clone)]
pub struct Subjects {
    prefix: String,
    rule: Option<Rule>,
}

impl fmt::Debug for Subjects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subjects")
            .field("prefix", &self.prefix)
            .field("rule", &self.rule.as_ref().map(|_| "custom"))
            .finish()
    }
}

impl Default for Subjects {
    fn default() -> Self {
        Self::prefix(DEFAULT_PREFIX)
    }
}

impl Subjects {
    /// `<prefix>.<Type>.<action>`.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            rule: None,
        }
    }

    /// A rule of your own. `prefix` names the subjects' common prefix (the stream and the stream
    /// consumer listen on `<prefix>.>`); every subject the rule gives must start with it.
    pub fn custom(
        prefix: impl Into<String>,
        rule: impl Fn(&Event) -> String + Send + Sync + 'static,
    ) -> Self {
        Self {
            prefix: prefix.into(),
            rule: Some(Arc::new(rule)),
        }
    }

    /// The common prefix.
    pub fn prefix_str(&self) -> &str {
        &self.prefix
    }

    /// The wildcard that covers every subject: `<prefix>.>`.
    pub fn filter(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// The event's subject.
    ///
    /// # Errors
    /// A message saying why the subject is not a valid NATS subject for publishing (an empty
    /// token, a space, a wildcard), or lies outside the prefix.
    pub fn subject(&self, event: &Event) -> Result<String, String> {
        let subject = match &self.rule {
            Some(rule) => rule(event),
            None => format!(
                "{}.{}.{}",
                self.prefix, event.distributed_type, event.action
            ),
        };
        check_subject(&subject)?;
        if !subject.starts_with(&format!("{}.", self.prefix)) {
            return Err(format!(
                "subject `{subject}` is outside the prefix `{}`",
                self.prefix
            ));
        }
        Ok(subject)
    }

    /// Checks the prefix itself (at build time).
    pub(crate) fn check(&self) -> Result<(), String> {
        check_subject(&self.prefix).map_err(|e| format!("subject prefix: {e}"))
    }
}

/// Whether `subject` is a NATS subject one can publish on.
fn check_subject(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err("the subject is empty".into());
    }
    for token in subject.split('.') {
        if token.is_empty() {
            return Err(format!("subject `{subject}` has an empty token"));
        }
        if token == "*" || token == ">" {
            return Err(format!("subject `{subject}` has a wildcard"));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("subject `{subject}` has white space"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use acts_as_distributed::Action;

    fn event(ty: &str) -> Event {
        Event::new(7, ty, "x", Action::Update, serde_json::json!({}))
    }

    #[test]
    fn default_subject_is_prefix_type_action() {
        let s = Subjects::default();
        assert_eq!(
            s.subject(&event("User")).as_deref(),
            Ok("distributes.User.update")
        );
    }

    #[test]
    fn bad_subjects_are_refused() {
        let s = Subjects::default();
        assert!(s.subject(&event("Bad Type")).is_err());
        assert!(s.subject(&event("a.")).is_err());
        assert!(s.subject(&event(">")).is_err());
        let outside = Subjects::custom("app", |e| format!("other.{}", e.distributed_type));
        assert!(
            outside
                .subject(&event("User"))
                .expect_err("an error")
                .contains("outside")
        );
        assert!(Subjects::prefix("a..b").check().is_err());
    }
}
