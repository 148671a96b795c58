//! The SQL front end: a Flink-dialect SQL file -> [`Program`].
//!
//! `sqlparser` tokenizes and parses the statements through [`dialect::SpillwayDialect`];
//! `CREATE TABLE` (which sqlparser cannot parse with `WATERMARK FOR`) is parsed by [`ddl`] on
//! top of the same `Parser`, so every error carries the line and column of the token at fault.
//! The planner turns `INSERT INTO ... SELECT` (or a bare `SELECT`) into a [`Pipeline`].
//!
//! Map of this module:
//! - `dialect.rs`: the sqlparser `Dialect` (identifiers, `TABLE t` arguments).
//! - `ddl.rs`: `CREATE TABLE` -> `TableDef`.
//! - `types.rs`: SQL types <-> column types, type coercion.
//! - `interval.rs`: `INTERVAL` and `TIMESTAMP` literals.
//! - `source.rs`: the FROM clause and column resolution over the source table.
//! - `window.rs`: `TUMBLE` in both forms (table function and GROUP BY).
//! - `expr_planner.rs`: AST expressions -> typed `plan::Expr`.
//! - `aggregate_planner.rs`: GROUP BY, aggregates, HAVING.
//! - `planner.rs`: INSERT/SELECT -> `Pipeline`.
//! - `explain.rs`: readable rendering of `plan::Expr`.

mod aggregate_planner;
mod ddl;
pub mod dialect;
mod explain;
mod expr_planner;
mod interval;
mod join;
mod late;
mod planner;
mod source;
mod stream_join;
mod subquery;
mod types;
mod updating;
mod window;
mod window_topn;
mod window_topn_groups;
mod window_topn_join;

#[cfg(test)]
mod expression_tests;
#[cfg(test)]
mod tests;

use sqlparser::ast::{Expr as AstExpr, Set, Spanned, Statement, Value};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Span, Token};

use crate::error::{EngineError, Pos, Result};
use crate::plan::Program;

pub use explain::{binary_symbol, explain_expr, sql_type_name};
pub use interval::explain_interval;

/// The implicit sink table of a bare `SELECT`.
pub const PRINT_SINK_NAME: &str = "__print";

/// Parses a whole SQL file (statements separated by `;`, with `--` and `/* */` comments)
/// into a [`Program`]: its tables, its `SET` settings and one pipeline for its
/// `INSERT INTO ... SELECT` (or bare `SELECT`, printed to an implicit `print` sink).
pub fn parse_program(text: &str) -> Result<Program> {
    let end = end_pos(text);
    let dialect = dialect::SpillwayDialect;
    let mut parser = Parser::new(&dialect)
        .try_with_sql(text)
        .map_err(|e| parser_error(e, end))?;
    let mut program = Program::default();
    let mut query_pos: Option<Pos> = None;
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        let next = parser.peek_token();
        if next.token == Token::EOF {
            break;
        }
        let start = pos_of_location(next.span.start, end);
        if is_create(&parser) {
            let table = ddl::parse_create_table(&mut parser, end)?;
            add_table(&mut program, table)?;
        } else {
            let statement = parser.parse_statement().map_err(|e| parser_error(e, end))?;
            match statement {
                Statement::Set(set) => add_setting(&mut program, &set, start)?,
                Statement::Insert(insert) => {
                    check_single_query(&mut query_pos, start)?;
                    let pipeline = planner::plan_insert(&insert, &program, start)?;
                    program.pipelines.push(pipeline);
                }
                Statement::Query(query) => {
                    check_single_query(&mut query_pos, start)?;
                    let (pipeline, sink) = planner::plan_select(&query, &program, start)?;
                    if program.table(&sink.name).is_some() {
                        return Err(EngineError::plan(
                            format!("a table named '{PRINT_SINK_NAME}' is reserved for the output of a bare SELECT"),
                            start,
                        ));
                    }
                    program.tables.insert(sink.name.clone(), sink);
                    program.pipelines.push(pipeline);
                }
                Statement::Explain { .. } | Statement::ExplainTable { .. } => {
                    return Err(EngineError::plan(
                        "EXPLAIN inside a SQL file is not supported; run `spillway explain FILE.sql`",
                        start,
                    ))
                }
                other => {
                    let text = other.to_string();
                    let word = text.split_whitespace().next().unwrap_or("").to_uppercase();
                    return Err(EngineError::plan(
                        format!("{word} statements are not supported (supported: CREATE TABLE, SET, INSERT INTO ... SELECT, SELECT)"),
                        start,
                    ));
                }
            }
        }
        if !parser.consume_token(&Token::SemiColon) {
            let found = parser.peek_token();
            if found.token != Token::EOF {
                return Err(EngineError::plan(
                    format!(
                        "expected ';' or the end of the file after the statement, found {}",
                        found.token
                    ),
                    pos_of_location(found.span.start, end),
                ));
            }
        }
    }
    Ok(program)
}

/// `CREATE [TEMPORARY] TABLE` starts here (other CREATE statements are refused).
fn is_create(parser: &Parser) -> bool {
    matches!(&parser.peek_token_ref().token, Token::Word(w) if w.keyword == Keyword::CREATE)
}

fn add_table(program: &mut Program, created: ddl::CreateTable) -> Result<()> {
    let ddl::CreateTable {
        def,
        if_not_exists,
        name_pos,
    } = created;
    if let Some(existing) = program.table(&def.name) {
        if if_not_exists {
            return Ok(());
        }
        return Err(EngineError::plan(
            format!(
                "table '{}' is already declared (at {})",
                def.name, existing.pos
            ),
            name_pos,
        ));
    }
    if def.name.eq_ignore_ascii_case(PRINT_SINK_NAME) {
        return Err(EngineError::plan(
            format!(
                "the table name '{PRINT_SINK_NAME}' is reserved for the output of a bare SELECT"
            ),
            name_pos,
        ));
    }
    program.tables.insert(def.name.clone(), def);
    Ok(())
}

fn check_single_query(query_pos: &mut Option<Pos>, start: Pos) -> Result<()> {
    if let Some(first) = query_pos {
        return Err(EngineError::plan(
            format!("only one INSERT INTO or SELECT per file is supported (the first one is at {first})"),
            start,
        ));
    }
    *query_pos = Some(start);
    Ok(())
}

/// `SET 'key' = 'value'` or `SET key.part = value`.
fn add_setting(program: &mut Program, set: &Set, start: Pos) -> Result<()> {
    let Set::SingleAssignment {
        variable, values, ..
    } = set
    else {
        return Err(EngineError::plan(
            "only `SET 'key' = 'value'` is supported",
            start,
        ));
    };
    let key = variable
        .0
        .iter()
        .map(|part| part.to_string())
        .collect::<Vec<_>>()
        .join(".");
    let key = match variable.0.as_slice() {
        [part] => part
            .as_ident()
            .map(|ident| ident.value.clone())
            .unwrap_or(key),
        _ => key,
    };
    let [value] = values.as_slice() else {
        return Err(EngineError::plan(
            format!("SET '{key}' needs exactly one value"),
            start,
        ));
    };
    let text = match value {
        AstExpr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            Value::Number(n, _) => Some(n.clone()),
            Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        },
        AstExpr::Identifier(ident) => Some(ident.value.clone()),
        _ => None,
    };
    let text = text.ok_or_else(|| {
        EngineError::plan(
            format!("SET '{key}': the value must be a string or a number, found {value}"),
            pos_of(value.span(), start),
        )
    })?;
    program.settings.insert(key, text);
    Ok(())
}

/// The start of `span`, or `fallback` when the span is empty (line 0).
pub(crate) fn pos_of(span: Span, fallback: Pos) -> Pos {
    pos_of_location(span.start, fallback)
}

pub(crate) fn pos_of_location(location: Location, fallback: Pos) -> Pos {
    if location.line == 0 {
        fallback
    } else {
        Pos {
            line: location.line,
            column: location.column,
        }
    }
}

/// The position just after the last character of `text` (where "end of file" errors point).
pub(crate) fn end_pos(text: &str) -> Pos {
    let line = text.matches('\n').count() as u64 + 1;
    let last_line = text.rsplit('\n').next().unwrap_or("");
    Pos {
        line,
        column: last_line.chars().count() as u64 + 1,
    }
}

/// Converts a sqlparser error into `EngineError::Plan`, moving its "at Line: x, Column: y"
/// into the position (errors at the end of the input carry none: they point at `end`).
pub(crate) fn parser_error(error: ParserError, end: Pos) -> EngineError {
    let message = match error {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => {
            return EngineError::plan("the SQL is nested too deeply", end)
        }
    };
    match split_location(&message) {
        Some((text, pos)) => EngineError::plan(format!("syntax error: {text}"), pos),
        None => EngineError::plan(format!("syntax error: {message}"), end),
    }
}

fn split_location(message: &str) -> Option<(&str, Pos)> {
    let at = message.rfind(" at Line: ")?;
    let rest = &message[at + " at Line: ".len()..];
    let (line, column) = rest.split_once(", Column: ")?;
    let line = line.trim().parse().ok()?;
    let column = column
        .trim()
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()?;
    Some((&message[..at], Pos { line, column }))
}
