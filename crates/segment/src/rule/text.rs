//! The compact text form of a rule: printed by [`Rule::to_text`] and read by [`parse_text`]
//! (grammar in the [module documentation](super)).

use std::fmt;

use serde_json::Value;

use super::{
    Aggregate, AttrCondition, Comparison, EventCondition, Literal, Measure, Op, Operand,
    PropertyFilter, Rule, Span, Window,
};

/// Words the text form reserves; names spelled like them are written in backquotes.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "all",
    "any",
    "segment",
    "trait",
    "interest",
    "ago",
    "true",
    "false",
    "between",
    "in",
    "not_in",
    "contains",
    "starts_with",
    "ends_with",
    "exists",
    "not_exists",
];

const MEASURES: &[&str] = &["count", "sum", "avg", "min", "max", "first", "last"];

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

/// A name as the text form writes it: bare when it reads back as the same name, otherwise
/// in backquotes.
fn write_name(f: &mut fmt::Formatter<'_>, name: &str, is_event: bool) -> fmt::Result {
    let bare = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(is_name_char)
        && !KEYWORDS.contains(&name)
        && (is_event || !name.contains('.'))
        && !name
            .rsplit_once('.')
            .is_some_and(|(_, last)| MEASURES.contains(&last));
    if bare {
        return f.write_str(name);
    }
    f.write_str("`")?;
    for c in name.chars() {
        if matches!(c, '`' | '\\') {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("`")
}

fn write_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str(&Value::String(s.to_string()).to_string())
}

fn write_literal(f: &mut fmt::Formatter<'_>, literal: &Literal) -> fmt::Result {
    match literal {
        Literal::String(s) => write_string(f, s),
        Literal::Number(n) => write!(f, "{n}"),
        Literal::Bool(b) => write!(f, "{b}"),
        Literal::Ago(span) => write!(f, "ago({span})"),
    }
}

fn write_op_value(f: &mut fmt::Formatter<'_>, op: Op, value: &Operand) -> fmt::Result {
    write!(f, " {}", op.as_str())?;
    match value {
        Operand::None => Ok(()),
        Operand::One(literal) => {
            f.write_str(" ")?;
            write_literal(f, literal)
        }
        Operand::List(items) => {
            f.write_str(" (")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_literal(f, item)?;
            }
            f.write_str(")")
        }
    }
}

fn write_window(f: &mut fmt::Formatter<'_>, window: &Option<Window>) -> fmt::Result {
    match window {
        None => Ok(()),
        Some(Window::Within(span)) => write!(f, "{span}"),
        Some(Window::Between(from, to)) => {
            f.write_str("between ")?;
            write_string(f, from)?;
            f.write_str(" and ")?;
            write_string(f, to)
        }
    }
}

fn write_event(f: &mut fmt::Formatter<'_>, e: &EventCondition) -> fmt::Result {
    write_name(f, &e.event, true)?;
    if !e.filters.is_empty() {
        f.write_str("[")?;
        for (i, filter) in e.filters.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write_name(f, &filter.prop, false)?;
            write_op_value(f, filter.op, &filter.value)?;
        }
        f.write_str("]")?;
    }
    let (measure, field, comparison) = match &e.measure {
        Measure::Performed => (None, None, None),
        Measure::Count { op, value } => (Some("count"), None, Some((*op, value))),
        Measure::First { op, value } => (Some("first"), None, Some((*op, value))),
        Measure::Last { op, value } => (Some("last"), None, Some((*op, value))),
        Measure::Aggregate {
            func,
            field,
            op,
            value,
        } => (Some(func.as_str()), Some(field), Some((*op, value))),
    };
    if let Some(measure) = measure {
        write!(f, ".{measure}")?;
    }
    f.write_str("(")?;
    if let Some(field) = field {
        write_name(f, field, false)?;
        if e.window.is_some() {
            f.write_str(", ")?;
        }
    }
    write_window(f, &e.window)?;
    f.write_str(")")?;
    if let Some((op, value)) = comparison {
        write_op_value(f, op, value)?;
    }
    Ok(())
}

/// How tightly a node binds when printed, so parentheses appear only where needed.
fn precedence(rule: &Rule) -> u8 {
    match rule {
        Rule::Any(rules) if rules.len() >= 2 => 0,
        Rule::All(rules) if rules.len() >= 2 => 1,
        _ => 2,
    }
}

fn write_rule(f: &mut fmt::Formatter<'_>, rule: &Rule, min: u8) -> fmt::Result {
    let parens = precedence(rule) < min;
    if parens {
        f.write_str("(")?;
    }
    match rule {
        Rule::All(rules) | Rule::Any(rules) if rules.len() >= 2 => {
            let (word, level) = if matches!(rule, Rule::All(_)) {
                (" and ", 2)
            } else {
                (" or ", 1)
            };
            for (i, item) in rules.iter().enumerate() {
                if i > 0 {
                    f.write_str(word)?;
                }
                // A nested combinator of the same kind keeps its parentheses, so the tree
                // reads back with the same shape.
                write_rule(f, item, level)?;
            }
        }
        Rule::All(rules) | Rule::Any(rules) => {
            f.write_str(if matches!(rule, Rule::All(_)) {
                "all("
            } else {
                "any("
            })?;
            for (i, item) in rules.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_rule(f, item, 0)?;
            }
            f.write_str(")")?;
        }
        Rule::Not(inner) => {
            f.write_str("not ")?;
            write_rule(f, inner, 2)?;
        }
        Rule::Attr(c) => {
            write_name(f, &c.attr, false)?;
            write_op_value(f, c.op, &c.value)?;
        }
        Rule::Trait(c) => {
            f.write_str("trait ")?;
            write_name(f, &c.name, false)?;
            write_op_value(f, c.op, &c.value)?;
        }
        Rule::Interest(c) => {
            f.write_str("interest ")?;
            write_name(f, &c.name, false)?;
            write_op_value(f, c.op, &c.value)?;
        }
        Rule::Segment(slug) => {
            f.write_str("segment ")?;
            write_string(f, slug)?;
        }
        Rule::Event(e) => write_event(f, e)?,
    }
    if parens {
        f.write_str(")")?;
    }
    Ok(())
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_rule(f, self, 0)
    }
}

impl Rule {
    /// The compact text form; [`parse_text`] reads it back as the same rule.
    pub fn to_text(&self) -> String {
        self.to_string()
    }
}

/// Where a text-form rule went wrong: 1-based line and column, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct TextError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A bare word; may be a keyword.
    Word(String),
    /// A backquoted name; never a keyword.
    Quoted(String),
    Str(String),
    Number(serde_json::Number),
    Span(Span),
    Punct(&'static str),
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("`{w}`"),
            Token::Quoted(w) => format!("name `{w}`"),
            Token::Str(s) => format!("string {s:?}"),
            Token::Number(n) => format!("number {n}"),
            Token::Span(s) => format!("span {s}"),
            Token::Punct(p) => format!("`{p}`"),
            Token::End => "the end of the rule".to_string(),
        }
    }
}

struct Located {
    token: Token,
    line: usize,
    column: usize,
}

fn tokenize(text: &str) -> Result<Vec<Located>, TextError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line, mut line_start) = (0, 1, 0);
    while i < chars.len() {
        let c = chars[i];
        let column = i - line_start + 1;
        let fail = |message: String| TextError {
            line,
            column,
            message,
        };
        if c == '\n' {
            line += 1;
            i += 1;
            line_start = i;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let token = if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len() && is_name_char(chars[i]) {
                i += 1;
            }
            Token::Word(chars[start..i].iter().collect())
        } else if c == '`' {
            i += 1;
            let mut name = String::new();
            loop {
                match chars.get(i) {
                    None | Some('\n') => return Err(fail("unterminated `name`".to_string())),
                    Some('`') => break,
                    Some('\\') => {
                        let escaped = chars
                            .get(i + 1)
                            .ok_or_else(|| fail("unterminated `name`".to_string()))?;
                        name.push(*escaped);
                        i += 2;
                    }
                    Some(other) => {
                        name.push(*other);
                        i += 1;
                    }
                }
            }
            i += 1;
            Token::Quoted(name)
        } else if c == '"' {
            i += 1;
            loop {
                match chars.get(i) {
                    None | Some('\n') => return Err(fail("unterminated string".to_string())),
                    Some('"') => break,
                    Some('\\') => i += 2,
                    Some(_) => i += 1,
                }
            }
            i += 1;
            let literal: String = chars[start..i.min(chars.len())].iter().collect();
            let value: String = serde_json::from_str(&literal)
                .map_err(|e| fail(format!("bad string {literal}: {e}")))?;
            Token::Str(value)
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let literal: String = chars[start..i].iter().collect();
            if let Some(span) = Span::parse(&literal) {
                Token::Span(span)
            } else {
                let number: serde_json::Number = serde_json::from_str(&literal)
                    .map_err(|_| fail(format!("bad number or span {literal:?}")))?;
                Token::Number(number)
            }
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let punct = ["!=", "<=", ">="]
                .into_iter()
                .find(|p| *p == two)
                .or_else(|| {
                    ["(", ")", "[", "]", ",", ".", "=", "<", ">"]
                        .into_iter()
                        .find(|p| p.starts_with(c))
                })
                .ok_or_else(|| fail(format!("unexpected character {c:?}")))?;
            i += punct.len();
            Token::Punct(punct)
        };
        tokens.push(Located {
            token,
            line,
            column,
        });
    }
    let column = chars.len() - line_start + 1;
    tokens.push(Located {
        token: Token::End,
        line,
        column,
    });
    Ok(tokens)
}

/// Parses the compact text form, e.g.
/// `country in ("DE", "AT") and purchase.count(90d) >= 3 and not email_click(30d)`.
pub fn parse_text(text: &str) -> Result<Rule, TextError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, at: 0 };
    let rule = parser.or()?;
    match parser.peek() {
        Token::End => Ok(rule),
        other => Err(parser.fail(format!(
            "expected `and`, `or` or the end, found {}",
            other.describe()
        ))),
    }
}

struct Parser {
    tokens: Vec<Located>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        let index = (self.at + ahead).min(self.tokens.len() - 1);
        &self.tokens[index].token
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        token
    }

    fn fail(&self, message: String) -> TextError {
        let located = &self.tokens[self.at.min(self.tokens.len() - 1)];
        TextError {
            line: located.line,
            column: located.column,
            message,
        }
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Token::Word(w) if w == word)
    }

    fn eat_punct(&mut self, punct: &str) -> bool {
        if matches!(self.peek(), Token::Punct(p) if *p == punct) {
            self.next();
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, punct: &str) -> Result<(), TextError> {
        if self.eat_punct(punct) {
            Ok(())
        } else {
            Err(self.fail(format!(
                "expected `{punct}`, found {}",
                self.peek().describe()
            )))
        }
    }

    fn or(&mut self) -> Result<Rule, TextError> {
        let mut rules = vec![self.and()?];
        while self.is_word("or") {
            self.next();
            rules.push(self.and()?);
        }
        Ok(if rules.len() == 1 {
            rules.remove(0)
        } else {
            Rule::Any(rules)
        })
    }

    fn and(&mut self) -> Result<Rule, TextError> {
        let mut rules = vec![self.unary()?];
        while self.is_word("and") {
            self.next();
            rules.push(self.unary()?);
        }
        Ok(if rules.len() == 1 {
            rules.remove(0)
        } else {
            Rule::All(rules)
        })
    }

    fn unary(&mut self) -> Result<Rule, TextError> {
        if self.is_word("not") {
            self.next();
            return Ok(Rule::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Rule, TextError> {
        if self.eat_punct("(") {
            let rule = self.or()?;
            self.expect_punct(")")?;
            return Ok(rule);
        }
        let word = match self.peek() {
            Token::Word(w) => Some(w.clone()),
            _ => None,
        };
        match word.as_deref() {
            Some(combinator @ ("all" | "any")) if matches!(self.peek_at(1), Token::Punct("(")) => {
                let all = combinator == "all";
                self.next();
                self.next();
                let mut rules = Vec::new();
                if !self.eat_punct(")") {
                    loop {
                        rules.push(self.or()?);
                        if self.eat_punct(")") {
                            break;
                        }
                        self.expect_punct(",")?;
                    }
                }
                return Ok(if all {
                    Rule::All(rules)
                } else {
                    Rule::Any(rules)
                });
            }
            Some("segment") => {
                self.next();
                return match self.next() {
                    Token::Str(slug) => Ok(Rule::Segment(slug)),
                    other => {
                        self.at -= 1;
                        Err(self.fail(format!(
                            "expected the segment's slug in quotes, found {}",
                            other.describe()
                        )))
                    }
                };
            }
            Some(which @ ("trait" | "interest")) => {
                let is_trait = which == "trait";
                self.next();
                let name = self.name("a name")?;
                let (op, value) = self.op_value()?;
                let comparison = Comparison { name, op, value };
                return Ok(if is_trait {
                    Rule::Trait(comparison)
                } else {
                    Rule::Interest(comparison)
                });
            }
            Some(w) if KEYWORDS.contains(&w) => {
                return Err(self.fail(format!(
                    "expected a condition, found the keyword `{w}` (write a name spelled like it in backquotes)"
                )));
            }
            _ => {}
        }
        let quoted = matches!(self.peek(), Token::Quoted(_));
        let name = self.name("a condition")?;
        let follows_event = matches!(self.peek(), Token::Punct("(" | "[" | "."));
        if !follows_event {
            let (op, value) = self.op_value()?;
            return Ok(Rule::Attr(AttrCondition {
                attr: name,
                op,
                value,
            }));
        }
        // A bare `purchase.count(` names the measure inside the word itself.
        let (event, mut measure) = match name.rsplit_once('.') {
            Some((kind, last)) if !quoted && MEASURES.contains(&last) => {
                (kind.to_string(), Some(last.to_string()))
            }
            _ => (name, None),
        };
        let mut filters = Vec::new();
        if measure.is_none() && self.eat_punct("[") {
            loop {
                let prop = self.name("a property name")?;
                let (op, value) = self.op_value()?;
                filters.push(PropertyFilter { prop, op, value });
                if self.eat_punct("]") {
                    break;
                }
                self.expect_punct(",")?;
            }
        }
        if measure.is_none() && self.eat_punct(".") {
            match self.next() {
                Token::Word(w) if MEASURES.contains(&w.as_str()) => measure = Some(w),
                other => {
                    self.at -= 1;
                    return Err(self.fail(format!(
                        "expected one of {}, found {}",
                        MEASURES.join(", "),
                        other.describe()
                    )));
                }
            }
        }
        self.expect_punct("(")?;
        let aggregate = measure.as_deref().and_then(Aggregate::parse);
        let field = match aggregate {
            Some(_) => {
                let field = self.name("the field to aggregate, e.g. amount")?;
                if !matches!(self.peek(), Token::Punct(")")) {
                    self.expect_punct(",")?;
                }
                Some(field)
            }
            None => None,
        };
        let window = self.window()?;
        self.expect_punct(")")?;
        let measure = match (measure.as_deref(), aggregate, field) {
            (None, _, _) => Measure::Performed,
            (Some(_), Some(func), Some(field)) => {
                let (op, value) = self.op_value()?;
                Measure::Aggregate {
                    func,
                    field,
                    op,
                    value,
                }
            }
            (Some(which), _, _) => {
                let (op, value) = self.op_value()?;
                match which {
                    "first" => Measure::First { op, value },
                    "last" => Measure::Last { op, value },
                    _ => Measure::Count { op, value },
                }
            }
        };
        Ok(Rule::Event(EventCondition {
            event,
            filters,
            window,
            measure,
        }))
    }

    fn window(&mut self) -> Result<Option<Window>, TextError> {
        match self.peek().clone() {
            Token::Span(span) => {
                self.next();
                Ok(Some(Window::Within(span)))
            }
            Token::Word(w) if w == "between" => {
                self.next();
                let from = self.string("the first date of the window")?;
                if !self.is_word("and") {
                    return Err(self.fail(format!(
                        "expected `and`, found {}",
                        self.peek().describe()
                    )));
                }
                self.next();
                let to = self.string("the last date of the window")?;
                Ok(Some(Window::Between(from, to)))
            }
            Token::Punct(")") => Ok(None),
            other => Err(self.fail(format!(
                "expected a window such as 90d or between \"2026-01-01\" and \"2026-03-31\", found {}",
                other.describe()
            ))),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, TextError> {
        match self.peek().clone() {
            Token::Str(s) => {
                self.next();
                Ok(s)
            }
            other => Err(self.fail(format!(
                "expected {what} in quotes, found {}",
                other.describe()
            ))),
        }
    }

    fn name(&mut self, what: &str) -> Result<String, TextError> {
        match self.peek().clone() {
            Token::Word(w) if !KEYWORDS.contains(&w.as_str()) => {
                self.next();
                Ok(w)
            }
            Token::Quoted(w) => {
                self.next();
                Ok(w)
            }
            other => Err(self.fail(format!("expected {what}, found {}", other.describe()))),
        }
    }

    fn op_value(&mut self) -> Result<(Op, Operand), TextError> {
        let op = match self.peek().clone() {
            Token::Punct(p) => Op::parse(p),
            Token::Word(w) => Op::parse(&w),
            _ => None,
        }
        .ok_or_else(|| {
            self.fail(format!(
                "expected an operator (= != < <= > >= between in not_in contains starts_with ends_with exists not_exists), found {}",
                self.peek().describe()
            ))
        })?;
        self.next();
        if op.is_unary() {
            return Ok((op, Operand::None));
        }
        if self.eat_punct("(") {
            let mut items = Vec::new();
            if !self.eat_punct(")") {
                loop {
                    items.push(self.literal()?);
                    if self.eat_punct(")") {
                        break;
                    }
                    self.expect_punct(",")?;
                }
            }
            return Ok((op, Operand::List(items)));
        }
        Ok((op, Operand::One(self.literal()?)))
    }

    fn literal(&mut self) -> Result<Literal, TextError> {
        let literal = match self.peek().clone() {
            Token::Str(s) => Literal::String(s),
            Token::Number(n) => Literal::Number(n),
            Token::Word(w) if w == "true" => Literal::Bool(true),
            Token::Word(w) if w == "false" => Literal::Bool(false),
            Token::Word(w) if w == "ago" => {
                self.next();
                self.expect_punct("(")?;
                let span = match self.peek().clone() {
                    Token::Span(span) => span,
                    other => {
                        return Err(self.fail(format!(
                            "expected a span such as 30d, found {}",
                            other.describe()
                        )));
                    }
                };
                self.next();
                self.expect_punct(")")?;
                return Ok(Literal::Ago(span));
            }
            other => {
                return Err(self.fail(format!(
                    "expected a value (a string in quotes, a number, true, false or ago(30d)), found {}",
                    other.describe()
                )));
            }
        };
        self.next();
        Ok(literal)
    }
}
