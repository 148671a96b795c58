//! Readable SQL-like rendering of planned expressions, for `spillway explain` and messages.

use arrow::datatypes::DataType;

use super::interval::explain_interval;
use super::types::{column_type_of_arrow, timestamp_type};
use crate::plan::{BinaryOp, Expr, Literal, UnaryOp};

/// Renders `e` as SQL: column names, operators (parenthesised by precedence), literals,
/// `CAST(x AS type)`, `CASE ... END`, and timestamp shifts as `ts + INTERVAL '1' SECOND`.
pub fn explain_expr(e: &Expr) -> String {
    let mut out = String::new();
    write_expr(e, &mut out);
    out
}

/// The SQL name of a planned type (`BIGINT`, `TIMESTAMP(3)`, ... and `NULL`).
pub fn sql_type_name(data_type: &DataType) -> String {
    match column_type_of_arrow(data_type) {
        Some(ty) => ty.sql_name().to_string(),
        None if *data_type == DataType::Null => "NULL".to_string(),
        None => data_type.to_string(),
    }
}

/// The SQL spelling of a binary operator.
pub fn binary_symbol(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Plus => "+",
        BinaryOp::Minus => "-",
        BinaryOp::Multiply => "*",
        BinaryOp::Divide => "/",
        BinaryOp::Modulo => "%",
        BinaryOp::Eq => "=",
        BinaryOp::NotEq => "<>",
        BinaryOp::Lt => "<",
        BinaryOp::LtEq => "<=",
        BinaryOp::Gt => ">",
        BinaryOp::GtEq => ">=",
        BinaryOp::And => "AND",
        BinaryOp::Or => "OR",
    }
}

/// Binding strength: higher binds tighter.
fn precedence(e: &Expr) -> u8 {
    match e {
        Expr::Binary { op, .. } => match op {
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            BinaryOp::Eq
            | BinaryOp::NotEq
            | BinaryOp::Lt
            | BinaryOp::LtEq
            | BinaryOp::Gt
            | BinaryOp::GtEq => 4,
            BinaryOp::Plus | BinaryOp::Minus => 5,
            BinaryOp::Multiply | BinaryOp::Divide | BinaryOp::Modulo => 6,
        },
        Expr::Unary {
            op: UnaryOp::Not, ..
        } => 3,
        Expr::IsNull { .. } => 4,
        Expr::Unary {
            op: UnaryOp::Negate,
            ..
        } => 7,
        _ => 8,
    }
}

fn write_child(child: &Expr, parenthesise: bool, out: &mut String) {
    if parenthesise {
        out.push('(');
        write_expr(child, out);
        out.push(')');
    } else {
        write_expr(child, out);
    }
}

fn write_expr(e: &Expr, out: &mut String) {
    let own = precedence(e);
    match e {
        Expr::Column { name, .. } => out.push_str(name),
        Expr::Literal(literal) => write_literal(literal, out),
        Expr::Binary {
            op,
            left,
            right,
            data_type,
        } => {
            write_child(left, precedence(left) < own, out);
            out.push(' ');
            out.push_str(binary_symbol(*op));
            out.push(' ');
            match right.as_ref() {
                Expr::Literal(Literal::Int64(ms)) if *data_type == timestamp_type() => {
                    out.push_str(&explain_interval(*ms))
                }
                _ => write_child(right, precedence(right) <= own, out),
            }
        }
        Expr::Unary { op, expr } => {
            out.push_str(match op {
                UnaryOp::Not => "NOT ",
                UnaryOp::Negate => "-",
            });
            write_child(
                expr,
                precedence(expr) < own || matches!(expr.as_ref(), Expr::Unary { .. }),
                out,
            );
        }
        Expr::IsNull { expr, negated } => {
            write_child(expr, precedence(expr) <= own, out);
            out.push_str(if *negated { " IS NOT NULL" } else { " IS NULL" });
        }
        Expr::Cast { expr, to } => {
            out.push_str("CAST(");
            write_expr(expr, out);
            out.push_str(" AS ");
            out.push_str(&sql_type_name(to));
            out.push(')');
        }
        Expr::Case {
            branches,
            otherwise,
            ..
        } => {
            out.push_str("CASE");
            for (condition, value) in branches {
                out.push_str(" WHEN ");
                write_expr(condition, out);
                out.push_str(" THEN ");
                write_expr(value, out);
            }
            if let Some(otherwise) = otherwise {
                out.push_str(" ELSE ");
                write_expr(otherwise, out);
            }
            out.push_str(" END");
        }
    }
}

fn write_literal(literal: &Literal, out: &mut String) {
    match literal {
        Literal::Null(DataType::Null) => out.push_str("NULL"),
        Literal::Null(data_type) => {
            out.push_str("CAST(NULL AS ");
            out.push_str(&sql_type_name(data_type));
            out.push(')');
        }
        Literal::Boolean(b) => out.push_str(if *b { "TRUE" } else { "FALSE" }),
        Literal::Int32(v) => out.push_str(&v.to_string()),
        Literal::Int64(v) => out.push_str(&v.to_string()),
        Literal::Float32(v) => out.push_str(&format!("{v:?}")),
        Literal::Float64(v) => out.push_str(&format!("{v:?}")),
        Literal::Utf8(s) => {
            out.push('\'');
            out.push_str(&s.replace('\'', "''"));
            out.push('\'');
        }
        Literal::TimestampMs(ms) => {
            match arrow::temporal_conversions::timestamp_ms_to_datetime(*ms) {
                Some(datetime) => {
                    out.push_str("TIMESTAMP '");
                    out.push_str(&datetime.format("%Y-%m-%d %H:%M:%S%.3f").to_string());
                    out.push('\'');
                }
                None => out.push_str(&format!("TIMESTAMP_MS({ms})")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, data_type: DataType) -> Expr {
        Expr::Column {
            index: 0,
            name: name.to_string(),
            data_type,
        }
    }

    fn binary(op: BinaryOp, left: Expr, right: Expr, data_type: DataType) -> Expr {
        Expr::Binary {
            op,
            left: Box::new(left),
            right: Box::new(right),
            data_type,
        }
    }

    #[test]
    fn precedence_decides_parentheses() {
        let a = column("a", DataType::Int64);
        let b = column("b", DataType::Int64);
        let sum = binary(BinaryOp::Plus, a.clone(), b.clone(), DataType::Int64);
        let product = binary(
            BinaryOp::Multiply,
            sum.clone(),
            Expr::Literal(Literal::Int64(2)),
            DataType::Int64,
        );
        assert_eq!(explain_expr(&product), "(a + b) * 2");
        let diff = binary(BinaryOp::Minus, a.clone(), sum, DataType::Int64);
        assert_eq!(explain_expr(&diff), "a - (a + b)");
        let left_assoc = binary(
            BinaryOp::Minus,
            binary(BinaryOp::Minus, a.clone(), b, DataType::Int64),
            Expr::Literal(Literal::Int64(1)),
            DataType::Int64,
        );
        assert_eq!(explain_expr(&left_assoc), "a - b - 1");
        let not = Expr::Unary {
            op: UnaryOp::Not,
            expr: Box::new(binary(
                BinaryOp::Gt,
                a,
                Expr::Literal(Literal::Int64(1)),
                DataType::Boolean,
            )),
        };
        assert_eq!(explain_expr(&not), "NOT a > 1");
    }

    #[test]
    fn literals_casts_and_case() {
        let s = column("s", DataType::Utf8);
        let case = Expr::Case {
            branches: vec![(
                Expr::IsNull {
                    expr: Box::new(s.clone()),
                    negated: false,
                },
                Expr::Literal(Literal::Utf8("it's".into())),
            )],
            otherwise: Some(Box::new(Expr::Cast {
                expr: Box::new(Expr::Literal(Literal::Float64(1.0))),
                to: DataType::Utf8,
            })),
            data_type: DataType::Utf8,
        };
        assert_eq!(
            explain_expr(&case),
            "CASE WHEN s IS NULL THEN 'it''s' ELSE CAST(1.0 AS STRING) END"
        );
        assert_eq!(
            explain_expr(&Expr::Literal(Literal::TimestampMs(1_704_067_200_500))),
            "TIMESTAMP '2024-01-01 00:00:00.500'"
        );
        assert_eq!(
            explain_expr(&Expr::Literal(Literal::Null(DataType::Int64))),
            "CAST(NULL AS BIGINT)"
        );
        assert_eq!(explain_expr(&Expr::Literal(Literal::Boolean(true))), "TRUE");
    }

    #[test]
    fn timestamp_shift_renders_as_interval() {
        let ts = column("ts", timestamp_type());
        let shifted = binary(
            BinaryOp::Minus,
            ts,
            Expr::Literal(Literal::Int64(5_000)),
            timestamp_type(),
        );
        assert_eq!(explain_expr(&shifted), "ts - INTERVAL '5' SECOND");
    }
}
