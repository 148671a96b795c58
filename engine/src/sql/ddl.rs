//! `CREATE TABLE` in Flink's dialect, parsed on sqlparser's token API:
//!
//! ```sql
//! CREATE [TEMPORARY] TABLE [IF NOT EXISTS] name (
//!   col TYPE [NOT NULL | NULL] [PRIMARY KEY NOT ENFORCED] [COMMENT '...'], ...
//!   [, WATERMARK FOR ts AS ts - INTERVAL 'n' unit]
//!   [, [CONSTRAINT c] PRIMARY KEY (a, b) NOT ENFORCED]
//! ) [COMMENT '...'] [WITH ('key' = 'value', ...)]
//! ```

use std::collections::BTreeMap;

use sqlparser::ast::{BinaryOperator, Expr as AstExpr, Ident, Spanned};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan};

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
        if self.parser.peek_keyword(Keyword::AS) {
            return Err(EngineError::plan(
                format!("computed column '{}' is not supported yet", ident.value),
                type_pos,
            ));
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
mod tests {
    use super::*;
    use crate::sql::dialect::SpillwayDialect;
    use crate::sql::end_pos;

    fn create(sql: &str) -> Result<CreateTable> {
        let dialect = SpillwayDialect;
        let mut parser = Parser::new(&dialect)
            .try_with_sql(sql)
            .map_err(|e| parser_error(e, end_pos(sql)))?;
        parse_create_table(&mut parser, end_pos(sql))
    }

    fn plan_error(sql: &str) -> (String, Pos) {
        match create(sql) {
            Err(EngineError::Plan { message, pos }) => (message, pos),
            other => panic!("expected a plan error for {sql}, got {other:?}"),
        }
    }

    #[test]
    fn design_trades_table() {
        let sql = "CREATE TABLE trades (\n  symbol STRING, price DOUBLE, volume BIGINT, ts TIMESTAMP(3),\n  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND\n) WITH (\n  'connector' = 'kafka', 'topic' = 'trades',\n  'format' = 'json'\n)";
        let table = create(sql).expect("parses").def;
        assert_eq!(table.name, "trades");
        let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["symbol", "price", "volume", "ts"]);
        let types: Vec<ColumnType> = table.columns.iter().map(|c| c.ty).collect();
        assert_eq!(
            types,
            [
                ColumnType::String,
                ColumnType::Double,
                ColumnType::BigInt,
                ColumnType::Timestamp
            ]
        );
        assert!(table.columns.iter().all(|c| c.nullable));
        assert_eq!(
            table.watermark,
            Some(WatermarkSpec {
                column: 3,
                bound_ms: 5_000
            })
        );
        assert_eq!(table.option("connector"), Some("kafka"));
        assert_eq!(table.option("topic"), Some("trades"));
        assert_eq!(table.options.len(), 3);
        assert_eq!(table.pos, Pos { line: 1, column: 1 });
    }

    #[test]
    fn every_supported_type() {
        let sql = "CREATE TABLE t (a STRING, b VARCHAR, c VARCHAR(10), d CHAR(3), e BOOLEAN, f INT, g INTEGER, h BIGINT, i FLOAT, j REAL, k DOUBLE, l DOUBLE PRECISION, m TIMESTAMP(3), n TIMESTAMP, o TIMESTAMP_LTZ(3))";
        let table = create(sql).expect("parses").def;
        let types: Vec<ColumnType> = table.columns.iter().map(|c| c.ty).collect();
        use ColumnType::*;
        assert_eq!(
            types,
            [
                String, String, String, String, Boolean, Int, Int, BigInt, Float, Float, Double,
                Double, Timestamp, Timestamp, Timestamp
            ]
        );
        assert!(table.options.is_empty());
        assert_eq!(table.watermark, None);
    }

    #[test]
    fn watermark_forms() {
        let cases = [
            ("ts", 0),
            ("ts - INTERVAL '0.5' SECOND", 500),
            ("ts - INTERVAL '3' MILLISECOND", 3),
            ("ts - INTERVAL '2' MINUTE", 120_000),
            ("ts - INTERVAL '1' HOUR", 3_600_000),
            ("ts - INTERVAL '1' DAY", 86_400_000),
            ("(ts - INTERVAL '5' SECOND)", 5_000),
        ];
        for (expr, bound_ms) in cases {
            let sql =
                format!("CREATE TABLE t (x INT, ts TIMESTAMP(3), WATERMARK FOR ts AS {expr})");
            let table = create(&sql).expect("parses").def;
            assert_eq!(
                table.watermark,
                Some(WatermarkSpec {
                    column: 1,
                    bound_ms
                }),
                "{expr}"
            );
        }
    }

    #[test]
    fn primary_key_not_enforced() {
        let table =
            create("CREATE TABLE t (a STRING, b INT, c INT, PRIMARY KEY (b, a) NOT ENFORCED)")
                .expect("parses")
                .def;
        assert_eq!(table.primary_key, vec![1, 0]);
        assert!(!table.columns[0].nullable && !table.columns[1].nullable);
        assert!(table.columns[2].nullable);

        let inline = create("CREATE TABLE t (a STRING PRIMARY KEY NOT ENFORCED, b INT NOT NULL)")
            .expect("parses")
            .def;
        assert_eq!(inline.primary_key, vec![0]);
        assert!(!inline.columns[1].nullable);

        let (message, pos) = plan_error("CREATE TABLE t (a INT, PRIMARY KEY (a))");
        assert!(message.contains("NOT ENFORCED"), "{message}");
        assert_eq!(
            pos,
            Pos {
                line: 1,
                column: 39
            }
        );

        let (message, pos) = plan_error("CREATE TABLE t (a INT, PRIMARY KEY (zz) NOT ENFORCED)");
        assert!(message.contains("'zz'"), "{message}");
        assert_eq!(
            pos,
            Pos {
                line: 1,
                column: 37
            }
        );
    }

    #[test]
    fn if_not_exists_and_temporary() {
        let table =
            create("CREATE TEMPORARY TABLE IF NOT EXISTS t (a INT) WITH ('connector' = 'print')")
                .expect("parses");
        assert!(table.if_not_exists);
        assert_eq!(
            table.name_pos,
            Pos {
                line: 1,
                column: 38
            }
        );
        assert_eq!(table.def.connector(), "print");
    }

    #[test]
    fn unsupported_type_names_type_and_position() {
        let (message, pos) = plan_error("CREATE TABLE t (\n  a INT,\n  price DECIMAL(10, 2)\n)");
        assert!(message.contains("DECIMAL(10,2)"), "{message}");
        assert!(message.contains("'price'"), "{message}");
        assert_eq!(pos, Pos { line: 3, column: 9 });

        let (message, pos) = plan_error("CREATE TABLE t (tags ARRAY<STRING>)");
        assert!(message.contains("ARRAY"), "{message}");
        assert_eq!(
            pos,
            Pos {
                line: 1,
                column: 22
            }
        );

        let (message, _) = plan_error("CREATE TABLE t (ts TIMESTAMP(6))");
        assert!(message.contains("TIMESTAMP(6)"), "{message}");
    }

    #[test]
    fn duplicate_column_is_an_error() {
        let (message, pos) = plan_error("CREATE TABLE t (a INT,\n A BIGINT)");
        assert!(message.contains("duplicate column 'A'"), "{message}");
        assert!(message.contains("line 1, column 17"), "{message}");
        assert_eq!(pos, Pos { line: 2, column: 2 });
    }

    #[test]
    fn watermark_errors() {
        let (message, pos) =
            plan_error("CREATE TABLE t (ts TIMESTAMP(3), WATERMARK FOR nope AS nope)");
        assert!(message.contains("'nope'"), "{message}");
        assert_eq!(
            pos,
            Pos {
                line: 1,
                column: 48
            }
        );

        let (message, pos) = plan_error("CREATE TABLE t (ts BIGINT, WATERMARK FOR ts AS ts)");
        assert!(
            message.contains("TIMESTAMP(3)") && message.contains("BIGINT"),
            "{message}"
        );
        assert_eq!(
            pos,
            Pos {
                line: 1,
                column: 42
            }
        );

        let (message, pos) = plan_error(
            "CREATE TABLE t (ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' YEAR)",
        );
        assert!(message.contains("YEAR"), "{message}");
        assert_eq!(pos.line, 1);

        let (message, _) = plan_error(
            "CREATE TABLE t (ts TIMESTAMP(3), WATERMARK FOR ts AS ts + INTERVAL '1' SECOND)",
        );
        assert!(
            message.contains("WATERMARK expression must be"),
            "{message}"
        );

        let (message, _) = plan_error(
            "CREATE TABLE t (ts TIMESTAMP(3), u TIMESTAMP(3), WATERMARK FOR ts AS u - INTERVAL '1' SECOND)",
        );
        assert!(message.contains("'u'"), "{message}");

        let (message, pos) = plan_error(
            "CREATE TABLE t (ts TIMESTAMP(3), WATERMARK FOR ts AS ts, WATERMARK FOR ts AS ts)",
        );
        assert!(message.contains("more than one WATERMARK"), "{message}");
        assert_eq!(
            pos,
            Pos {
                line: 1,
                column: 58
            }
        );
    }

    #[test]
    fn option_errors() {
        let (message, pos) = plan_error("CREATE TABLE t (a INT) WITH ('k' = 'v', 'k' = 'w')");
        assert!(message.contains("'k' is given twice"), "{message}");
        assert_eq!(
            pos,
            Pos {
                line: 1,
                column: 41
            }
        );

        let (message, pos) = plan_error("CREATE TABLE t (a INT) WITH (connector = 'kafka')");
        assert!(message.contains("quoted option key"), "{message}");
        assert_eq!(
            pos,
            Pos {
                line: 1,
                column: 30
            }
        );
    }

    proptest::proptest! {
        /// Any set of distinct column names and supported types parses back as declared.
        #[test]
        fn declared_columns_round_trip(
            columns in proptest::collection::btree_map("[a-z][a-z0-9_]{0,8}", 0usize..7, 1..12)
        ) {
            let types = [
                ("STRING", ColumnType::String),
                ("BOOLEAN", ColumnType::Boolean),
                ("INT", ColumnType::Int),
                ("BIGINT", ColumnType::BigInt),
                ("FLOAT", ColumnType::Float),
                ("DOUBLE", ColumnType::Double),
                ("TIMESTAMP(3)", ColumnType::Timestamp),
            ];
            let list: Vec<String> = columns
                .iter()
                .map(|(name, t)| format!("`{name}` {}", types[*t].0))
                .collect();
            let sql = format!("CREATE TABLE t ({}) WITH ('connector' = 'print')", list.join(", "));
            let table = create(&sql).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?.def;
            let parsed: Vec<(String, ColumnType)> = table.columns.iter().map(|c| (c.name.clone(), c.ty)).collect();
            let expected: Vec<(String, ColumnType)> = columns.iter().map(|(n, t)| (n.clone(), types[*t].1)).collect();
            proptest::prop_assert_eq!(parsed, expected);
        }
    }

    #[test]
    fn syntax_errors_keep_positions() {
        let (message, pos) = plan_error("CREATE TABLE t (a INT b INT)");
        assert!(message.starts_with("syntax error"), "{message}");
        assert_eq!(
            pos,
            Pos {
                line: 1,
                column: 23
            }
        );

        let (message, pos) = plan_error("CREATE TABLE t (a INT");
        assert!(message.contains("EOF"), "{message}");
        assert_eq!(
            pos,
            Pos {
                line: 1,
                column: 22
            }
        );

        let (message, _) = plan_error("CREATE TABLE db.t (a INT)");
        assert!(message.contains("qualified"), "{message}");

        let (message, _) = plan_error("CREATE VIEW v AS SELECT 1");
        assert!(message.contains("only CREATE TABLE"), "{message}");
    }
}
