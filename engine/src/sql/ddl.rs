//! `CREATE TABLE` in Flink's dialect, parsed on sqlparser's token API:
//!
//! ```sql
//! CREATE [TEMPORARY] TABLE [IF NOT EXISTS] name (
//!   col TYPE [NOT NULL | NULL] [PRIMARY KEY NOT ENFORCED] [COMMENT '...'], ...
//!   [, p_time AS PROCTIME() [COMMENT '...']]   -- at most one processing-time column
//!   [, WATERMARK FOR ts AS ts - INTERVAL 'n' unit]
//!   [, [CONSTRAINT c] PRIMARY KEY (a, b) NOT ENFORCED]
//! ) [COMMENT '...'] [WITH ('key' = 'value', ...)]
//! ```

use std::collections::BTreeMap;

use sqlparser::ast::{BinaryOperator, Expr as AstExpr, Ident, Spanned};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::expr_planner::call_of;
use super::interval::interval_ms;
use super::types::column_type_of;
use super::{parser_error, pos_of};
use crate::catalog::{Column, ColumnType, TableDef, WatermarkSpec};
use crate::error::{EngineError, Pos, Result};

/// A parsed `CREATE TABLE`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CreateTable {
    pub def: TableDef,
    pub if_not_exists: bool,
    /// Where the table's name is, for "already declared" errors.
    pub name_pos: Pos,
}

/// `WATERMARK FOR col AS expr` before it is checked against the columns.
struct WatermarkClause {
    column: Ident,
    expr: AstExpr,
    pos: Pos,
}

/// A `PRIMARY KEY (...)` before it is checked against the columns.
struct PrimaryKeyClause {
    columns: Vec<Ident>,
    pos: Pos,
}

/// Parses `CREATE TABLE ...` up to (not including) the `;`. The parser is at `CREATE`.
pub(crate) fn parse_create_table(parser: &mut Parser, end: Pos) -> Result<CreateTable> {
    let mut ddl = DdlParser { parser, end };
    ddl.parse()
}

struct DdlParser<'p, 'a> {
    parser: &'p mut Parser<'a>,
    end: Pos,
}

impl DdlParser<'_, '_> {
    fn parse(&mut self) -> Result<CreateTable> {
        let create = self.parser.next_token();
        let pos = self.token_pos(&create);
        let _temporary = self.parser.parse_keyword(Keyword::TEMPORARY);
        if !self.parser.parse_keyword(Keyword::TABLE) {
            let found = self.parser.peek_token();
            return Err(EngineError::plan(
                format!(
                    "only CREATE TABLE is supported, found CREATE {}",
                    found.token
                ),
                self.token_pos(&found),
            ));
        }
        let if_not_exists =
            self.parser
                .parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name_pos = self.peek_pos();
        let name = self
            .parser
            .parse_object_name(false)
            .map_err(|e| self.error(e))?;
        let name = match name.0.as_slice() {
            [part] => part.as_ident().map(|i| i.value.clone()),
            _ => None,
        }
        .ok_or_else(|| {
            EngineError::plan(
                format!("qualified table names like {name} are not supported; use a plain name"),
                name_pos,
            )
        })?;

        self.expect(&Token::LParen)?;
        let mut columns: Vec<(Column, Pos)> = Vec::new();
        let mut watermark: Option<WatermarkClause> = None;
        let mut primary_key: Option<PrimaryKeyClause> = None;
        loop {
            let element_pos = self.peek_pos();
            if self.peek_word("WATERMARK") {
                let clause = self.parse_watermark()?;
                if watermark.is_some() {
                    return Err(EngineError::plan(
                        format!("table '{name}' declares more than one WATERMARK"),
                        element_pos,
                    ));
                }
                watermark = Some(clause);
            } else if self.parser.peek_keyword(Keyword::PRIMARY)
                || self.parser.peek_keyword(Keyword::CONSTRAINT)
            {
                if self.parser.parse_keyword(Keyword::CONSTRAINT) {
                    self.parser.parse_identifier().map_err(|e| self.error(e))?;
                }
                let columns = self.parse_primary_key_columns()?;
                set_primary_key(&mut primary_key, columns, element_pos, &name)?;
            } else {
                let (column, inline_key) = self.parse_column()?;
                if let Some((_, first)) = columns
                    .iter()
                    .find(|(c, _)| c.name.eq_ignore_ascii_case(&column.name))
                {
                    return Err(EngineError::plan(
                        format!(
                            "duplicate column '{}' in table '{name}' (first declared at {first})",
                            column.name
                        ),
                        element_pos,
                    ));
                }
                if column.ty == ColumnType::ProcTime {
                    if let Some((first, _)) =
                        columns.iter().find(|(c, _)| c.ty == ColumnType::ProcTime)
                    {
                        return Err(EngineError::plan(
                            format!(
                                "table '{name}' declares more than one PROCTIME() column ('{}' \
                                 and '{}'); declare one processing-time column",
                                first.name, column.name
                            ),
                            element_pos,
                        ));
                    }
                }
                if let Some(key_pos) = inline_key {
                    let ident = Ident::new(column.name.clone());
                    set_primary_key(&mut primary_key, vec![ident], key_pos, &name)?;
                }
                columns.push((column, element_pos));
            }
            if self.parser.consume_token(&Token::Comma) {
                continue;
            }
            self.expect(&Token::RParen)?;
            break;
        }
        if columns.is_empty() {
            return Err(EngineError::plan(
                format!("table '{name}' declares no columns"),
                name_pos,
            ));
        }
        if self.parser.parse_keyword(Keyword::COMMENT) {
            self.parse_string("a comment")?;
        }
        if self.parser.peek_keyword(Keyword::PARTITIONED) {
            return Err(EngineError::plan(
                "PARTITIONED BY is not supported",
                self.peek_pos(),
            ));
        }
        let options = if self.parser.parse_keyword(Keyword::WITH) {
            self.parse_options()?
        } else {
            BTreeMap::new()
        };

        let mut columns: Vec<Column> = columns.into_iter().map(|(c, _)| c).collect();
        let watermark = match watermark {
            Some(clause) => Some(resolve_watermark(&clause, &columns, &name, self.end)?),
            None => None,
        };
        let primary_key = match primary_key {
            Some(clause) => resolve_primary_key(&clause, &mut columns, &name, self.end)?,
            None => Vec::new(),
        };
        Ok(CreateTable {
            def: TableDef {
                name,
                columns,
                watermark,
                primary_key,
                options,
                pos,
            },
            if_not_exists,
            name_pos,
        })
    }

    /// `name TYPE [NOT NULL | NULL] [PRIMARY KEY NOT ENFORCED] [COMMENT '...']`; returns
    /// the column and the position of an inline PRIMARY KEY.
    fn parse_column(&mut self) -> Result<(Column, Option<Pos>)> {
        let ident = self.parser.parse_identifier().map_err(|e| self.error(e))?;
        let type_pos = self.peek_pos();
        if self.parser.parse_keyword(Keyword::AS) {
            return self.parse_proctime_column(ident, type_pos);
        }
        let sql_type = self.parser.parse_data_type().map_err(|e| self.error(e))?;
        let ty = column_type_of(&sql_type).map_err(|e| {
            EngineError::plan(
                format!("column '{}': {}", ident.value, e.message()),
                type_pos,
            )
        })?;
        let mut nullable = true;
        let mut inline_key = None;
        loop {
            let option_pos = self.peek_pos();
            if self.parser.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
                nullable = false;
            } else if self.parser.parse_keyword(Keyword::NULL) {
                nullable = true;
            } else if self
                .parser
                .parse_keywords(&[Keyword::PRIMARY, Keyword::KEY])
            {
                self.expect_not_enforced()?;
                inline_key = Some(option_pos);
            } else if self.parser.parse_keyword(Keyword::COMMENT) {
                self.parse_string("a comment")?;
            } else if self.parser.peek_keyword(Keyword::METADATA) {
                return Err(EngineError::plan(
                    format!("METADATA column '{}' is not supported yet", ident.value),
                    option_pos,
                ));
            } else {
                break;
            }
        }
        Ok((
            Column {
                name: ident.value,
                ty,
                nullable,
            },
            inline_key,
        ))
    }

    /// The rest of `name AS PROCTIME() [COMMENT '...']` (the parser is after AS): the only
    /// computed column spillway supports, a processing-time column (`crate::proctime`).
    fn parse_proctime_column(
        &mut self,
        ident: Ident,
        as_pos: Pos,
    ) -> Result<(Column, Option<Pos>)> {
        let expr = self.parser.parse_expr().map_err(|e| self.error(e))?;
        let pos = pos_of(expr.span(), as_pos);
        let only = || {
            EngineError::plan(
                format!(
                    "computed column '{0}' is not supported yet: the only computed column is \
                     a processing-time column, '{0} AS PROCTIME()'",
                    ident.value
                ),
                pos,
            )
        };
        let AstExpr::Function(function) = &expr else {
            return Err(only());
        };
        let call = call_of(function, pos)?;
        if call.name != "PROCTIME" {
            return Err(only());
        }
        if !call.args.is_empty() || call.distinct {
            return Err(EngineError::plan(
                format!(
                    "PROCTIME() takes no arguments, found {expr} for column '{}'",
                    ident.value
                ),
                pos,
            ));
        }
        if self.parser.parse_keyword(Keyword::COMMENT) {
            self.parse_string("a comment")?;
        }
        Ok((
            Column {
                name: ident.value,
                ty: ColumnType::ProcTime,
                nullable: false,
            },
            None,
        ))
    }

    /// `WATERMARK FOR col AS expr` (the parser is at WATERMARK).
    fn parse_watermark(&mut self) -> Result<WatermarkClause> {
        let watermark = self.parser.next_token();
        let pos = self.token_pos(&watermark);
        self.parser
            .expect_keyword(Keyword::FOR)
            .map_err(|e| self.error(e))?;
        let column = self.parser.parse_identifier().map_err(|e| self.error(e))?;
        self.parser
            .expect_keyword(Keyword::AS)
            .map_err(|e| self.error(e))?;
        let expr = self.parser.parse_expr().map_err(|e| self.error(e))?;
        Ok(WatermarkClause { column, expr, pos })
    }

    /// `PRIMARY KEY (a, b) NOT ENFORCED` (the parser is at PRIMARY).
    fn parse_primary_key_columns(&mut self) -> Result<Vec<Ident>> {
        self.parser
            .expect_keywords(&[Keyword::PRIMARY, Keyword::KEY])
            .map_err(|e| self.error(e))?;
        self.expect(&Token::LParen)?;
        let mut columns = Vec::new();
        loop {
            columns.push(self.parser.parse_identifier().map_err(|e| self.error(e))?);
            if !self.parser.consume_token(&Token::Comma) {
                break;
            }
        }
        self.expect(&Token::RParen)?;
        self.expect_not_enforced()?;
        Ok(columns)
    }

    fn expect_not_enforced(&mut self) -> Result<()> {
        if self
            .parser
            .parse_keywords(&[Keyword::NOT, Keyword::ENFORCED])
        {
            return Ok(());
        }
        Err(EngineError::plan(
            "PRIMARY KEY must be declared NOT ENFORCED (spillway, like Flink, does not check keys)",
            self.peek_pos(),
        ))
    }

    /// `('key' = 'value', ...)` after WITH.
    fn parse_options(&mut self) -> Result<BTreeMap<String, String>> {
        self.expect(&Token::LParen)?;
        let mut options = BTreeMap::new();
        if self.parser.consume_token(&Token::RParen) {
            return Ok(options);
        }
        loop {
            let key_pos = self.peek_pos();
            let key = self.parse_string("a quoted option key, e.g. 'connector'")?;
            self.expect(&Token::Eq)?;
            let value = self.parse_string("a quoted option value, e.g. 'kafka'")?;
            if options.insert(key.clone(), value).is_some() {
                return Err(EngineError::plan(
                    format!("option '{key}' is given twice"),
                    key_pos,
                ));
            }
            if self.parser.consume_token(&Token::Comma) {
                continue;
            }
            self.expect(&Token::RParen)?;
            return Ok(options);
        }
    }

    /// A single-quoted string.
    fn parse_string(&mut self, what: &str) -> Result<String> {
        let token = self.parser.next_token();
        match token.token {
            Token::SingleQuotedString(s) => Ok(s),
            other => Err(EngineError::plan(
                format!("expected {what}, found {other}"),
                self.token_pos_of(token.span.start),
            )),
        }
    }

    fn expect(&mut self, token: &Token) -> Result<()> {
        self.parser
            .expect_token(token)
            .map(|_| ())
            .map_err(|e| self.error(e))
    }

    /// Whether the next token is the unquoted word `word`.
    fn peek_word(&self, word: &str) -> bool {
        matches!(&self.parser.peek_token_ref().token,
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
    }

    fn peek_pos(&self) -> Pos {
        let token = self.parser.peek_token_ref();
        self.token_pos_of(token.span.start)
    }

    fn token_pos(&self, token: &TokenWithSpan) -> Pos {
        self.token_pos_of(token.span.start)
    }

    fn token_pos_of(&self, location: sqlparser::tokenizer::Location) -> Pos {
        super::pos_of_location(location, self.end)
    }

    fn error(&self, e: sqlparser::parser::ParserError) -> EngineError {
        parser_error(e, self.end)
    }
}

fn set_primary_key(
    slot: &mut Option<PrimaryKeyClause>,
    columns: Vec<Ident>,
    pos: Pos,
    table: &str,
) -> Result<()> {
    if slot.is_some() {
        return Err(EngineError::plan(
            format!("table '{table}' declares more than one PRIMARY KEY"),
            pos,
        ));
    }
    *slot = Some(PrimaryKeyClause { columns, pos });
    Ok(())
}

fn resolve_primary_key(
    clause: &PrimaryKeyClause,
    columns: &mut [Column],
    table: &str,
    end: Pos,
) -> Result<Vec<usize>> {
    let mut indexes = Vec::new();
    for ident in &clause.columns {
        let pos = if ident.span.start.line == 0 {
            clause.pos
        } else {
            pos_of(ident.span, end)
        };
        let index = columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(&ident.value))
            .ok_or_else(|| {
                EngineError::plan(
                    format!(
                        "PRIMARY KEY column '{}' is not a column of table '{table}'",
                        ident.value
                    ),
                    pos,
                )
            })?;
        if indexes.contains(&index) {
            return Err(EngineError::plan(
                format!("PRIMARY KEY lists column '{}' twice", ident.value),
                pos,
            ));
        }
        // Key columns are NOT NULL, as in Flink.
        columns[index].nullable = false;
        indexes.push(index);
    }
    Ok(indexes)
}

fn resolve_watermark(
    clause: &WatermarkClause,
    columns: &[Column],
    table: &str,
    end: Pos,
) -> Result<WatermarkSpec> {
    let column_pos = pos_of(clause.column.span, clause.pos);
    let column = columns
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(&clause.column.value))
        .ok_or_else(|| {
            EngineError::plan(
                format!(
                    "WATERMARK FOR '{}': no such column in table '{table}'",
                    clause.column.value
                ),
                column_pos,
            )
        })?;
    if columns[column].ty == ColumnType::ProcTime {
        return Err(EngineError::plan(
            format!(
                "WATERMARK FOR '{}': a processing-time column (AS PROCTIME()) has no watermark; \
                 windows over it run on the wall clock. Declare the WATERMARK on an event-time \
                 TIMESTAMP(3) column",
                clause.column.value
            ),
            column_pos,
        ));
    }
    if columns[column].ty != ColumnType::Timestamp {
        return Err(EngineError::plan(
            format!(
                "WATERMARK FOR '{}': the column must be TIMESTAMP(3), it is {}",
                clause.column.value,
                columns[column].ty.sql_name()
            ),
            column_pos,
        ));
    }
    let expr_pos = pos_of(clause.expr.span(), end);
    let shape_error = || {
        EngineError::plan(
            format!(
                "WATERMARK expression must be `{0}` or `{0} - INTERVAL 'n' unit`, found {1}",
                clause.column.value, clause.expr
            ),
            expr_pos,
        )
    };
    let (referenced, bound_ms) = match unnest(&clause.expr) {
        AstExpr::Identifier(ident) => (ident, 0),
        AstExpr::BinaryOp {
            left,
            op: BinaryOperator::Minus,
            right,
        } => match (unnest(left), unnest(right)) {
            (AstExpr::Identifier(ident), AstExpr::Interval(interval)) => {
                (ident, interval_ms(interval, expr_pos)?)
            }
            _ => return Err(shape_error()),
        },
        _ => return Err(shape_error()),
    };
    if !referenced.value.eq_ignore_ascii_case(&clause.column.value) {
        return Err(EngineError::plan(
            format!(
                "WATERMARK FOR '{}' must be computed from '{}' itself, found '{}'",
                clause.column.value, clause.column.value, referenced.value
            ),
            pos_of(referenced.span, expr_pos),
        ));
    }
    if bound_ms < 0 {
        return Err(EngineError::plan(
            "the WATERMARK delay must not be negative",
            expr_pos,
        ));
    }
    Ok(WatermarkSpec { column, bound_ms })
}

fn unnest(expr: &AstExpr) -> &AstExpr {
    match expr {
        AstExpr::Nested(inner) => unnest(inner),
        other => other,
    }
}

#[cfg(test)]
#[path = "ddl_tests.rs"]
mod tests;
