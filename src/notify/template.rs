//! The tiny template language of `config/templates/`: text with `{{name}}` placeholders, nothing
//! else (no loops, no conditionals — what varies is computed in [`super::render`], so an operator
//! editing a file cannot break the logic). Parsed once when the notifier is built; an unknown or
//! unclosed placeholder is a configuration error naming the file, not a surprise at 09:00.

use std::collections::BTreeMap;

/// One parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    Var(String),
}

/// How values are written into the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// As is (plain text, subjects).
    None,
    /// `&`, `<`, `>`, `"`, `'` escaped (the HTML alternative).
    Html,
}

impl Template {
    /// Parse `text`; every placeholder must be one of `known`. `what` names the template in errors.
    pub fn parse(text: &str, known: &[&str], what: &str) -> Result<Template, String> {
        let mut segments = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                segments.push(Segment::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                let line = text[..text.len() - rest.len() + start].lines().count().max(1);
                return Err(format!("{what}: line {line}: `{{{{` without a closing `}}}}`"));
            };
            let name = after[..end].trim();
            if !known.contains(&name) {
                let line = text[..text.len() - rest.len() + start].lines().count().max(1);
                return Err(format!(
                    "{what}: line {line}: unknown placeholder {{{{{name}}}}} (known: {})",
                    known.join(", ")
                ));
            }
            segments.push(Segment::Var(name.to_owned()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Text(rest.to_owned()));
        }
        Ok(Template { segments })
    }

    /// Fill in `values`. A placeholder without a value (cannot happen for templates parsed against
    /// the same names) is written as nothing.
    pub fn render(&self, values: &BTreeMap<&str, String>, escape: Escape) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Text(t) => out.push_str(t),
                Segment::Var(name) => {
                    let v = values.get(name.as_str()).map_or("", String::as_str);
                    match escape {
                        Escape::None => out.push_str(v),
                        Escape::Html => out.push_str(&html_escape(v)),
                    }
                }
            }
        }
        out
    }
}

/// Escape text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    }

    #[test]
    fn placeholders_are_filled_and_whitespace_inside_braces_is_allowed() {
        let t = Template::parse("안녕하세요 {{name}}님, {{ n }}차", &["name", "n"], "t").unwrap();
        assert_eq!(t.render(&vals(&[("name", "에이씨미"), ("n", "2")]), Escape::None), "안녕하세요 에이씨미님, 2차");
    }

    #[test]
    fn html_escaping_applies_to_values_not_to_the_template() {
        let t = Template::parse("<p>{{name}}</p>", &["name"], "t").unwrap();
        let v = vals(&[("name", "<script>\"A&B\"'")]);
        assert_eq!(t.render(&v, Escape::Html), "<p>&lt;script&gt;&quot;A&amp;B&quot;&#39;</p>");
        assert_eq!(t.render(&v, Escape::None), "<p><script>\"A&B\"'</p>");
    }

    #[test]
    fn unknown_and_unclosed_placeholders_are_errors_with_the_line() {
        let e = Template::parse("a\nb {{nmae}}", &["name"], "x.ko.txt").unwrap_err();
        assert!(e.contains("x.ko.txt: line 2") && e.contains("nmae"), "{e}");
        let e = Template::parse("a {{name", &["name"], "x.ko.txt").unwrap_err();
        assert!(e.contains("without a closing"), "{e}");
    }
}
