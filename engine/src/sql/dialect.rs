//! spillway's SQL dialect for `sqlparser`: Flink's identifier rules plus the `TABLE name`
//! argument of window table functions (`TUMBLE(TABLE trades, DESCRIPTOR(ts), ...)`).
//!
//! `CREATE TABLE` (with `WATERMARK FOR`) is parsed by `super::ddl` on top of the same
//! `Parser`, so its errors keep line and column too.

use sqlparser::ast::{Expr, Ident};
use sqlparser::dialect::{Dialect, GenericDialect};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

/// The word that marks a table argument in the AST: `TABLE trades` is parsed into
/// `Expr::Prefixed { prefix: TABLE, value: Identifier(trades) }`.
pub(crate) const TABLE_ARGUMENT_PREFIX: &str = "TABLE";

/// Flink-like dialect: backquoted (and double-quoted) identifiers, `--` and `/* */` comments,
/// standard string literals, and `TABLE name` as a function argument.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpillwayDialect;

impl Dialect for SpillwayDialect {
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        GenericDialect.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch == '_'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch.is_ascii_digit() || ch == '_' || ch == '$'
    }

    fn identifier_quote_style(&self, _identifier: &str) -> Option<char> {
        Some('`')
    }

    fn supports_group_by_expr(&self) -> bool {
        true
    }

    /// `FOR SYSTEM_TIME AS OF t.ts` after a table name (temporal joins with dimension tables).
    fn supports_table_versioning(&self) -> bool {
        true
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        // Parsed so that the planner can refuse it with a clear message.
        true
    }

    /// `TABLE name` inside a function's argument list (the window table functions).
    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        // `TABLE name` followed by `,` `)` or `.` (a qualified name): an argument.
        let [first, second, third] = parser.peek_tokens_ref::<3>();
        let is_table_keyword = matches!(&first.token,
            Token::Word(w) if w.keyword == Keyword::TABLE && w.quote_style.is_none());
        let is_argument = matches!(&second.token, Token::Word(_))
            && matches!(&third.token, Token::Comma | Token::RParen | Token::Period);
        if !is_table_keyword || !is_argument {
            return None;
        }
        let table_token = parser.next_token();
        let prefix = Ident {
            value: TABLE_ARGUMENT_PREFIX.to_string(),
            quote_style: None,
            span: table_token.span,
        };
        Some(parser.parse_object_name(false).map(|name| {
            let mut parts: Vec<Ident> = name
                .0
                .into_iter()
                .filter_map(|part| part.as_ident().cloned())
                .collect();
            let value = if parts.len() == 1 {
                Expr::Identifier(parts.remove(0))
            } else {
                Expr::CompoundIdentifier(parts)
            };
            Expr::Prefixed {
                prefix,
                value: Box::new(value),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::ast::{SetExpr, Statement, TableFactor};

    fn parse(sql: &str) -> Result<Vec<Statement>, ParserError> {
        Parser::parse_sql(&SpillwayDialect, sql)
    }

    #[test]
    fn table_argument_parses_as_prefixed_expression() {
        let statements =
            parse("SELECT * FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND))")
                .expect("parses");
        let Statement::Query(query) = &statements[0] else {
            panic!("not a query: {statements:?}");
        };
        let SetExpr::Select(select) = query.body.as_ref() else {
            panic!("not a select");
        };
        let TableFactor::TableFunction { expr, .. } = &select.from[0].relation else {
            panic!("not a table function: {:?}", select.from[0].relation);
        };
        let text = expr.to_string();
        assert_eq!(
            text,
            "TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND)"
        );
    }

    #[test]
    fn backquoted_identifiers_and_comments() {
        let statements =
            parse("SELECT `select` -- a comment\n FROM /* block */ t").expect("parses");
        assert_eq!(statements.len(), 1);
        assert_eq!(statements[0].to_string(), "SELECT `select` FROM t");
    }

    #[test]
    fn table_keyword_elsewhere_is_unchanged() {
        // `TABLE(` is still the table-function syntax.
        assert!(parse("SELECT * FROM TABLE(f(1))").is_ok());
        // `TABLE` not followed by a name and `,` / `)` is left to sqlparser.
        let statements = parse("SELECT TABLE FROM t").expect("parses");
        assert!(!format!("{statements:?}").contains("Prefixed"));
    }
}
