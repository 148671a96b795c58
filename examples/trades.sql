-- Per symbol, 1-second tumbling windows over the `trades` topic.
-- `spillway demo` runs this file against an embedded Kafka and prints the results;
-- `spillway run examples/trades.sql` runs it against the broker named below.
CREATE TABLE trades (
  symbol STRING,
  price DOUBLE,
  volume BIGINT,
  ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = 'trades',
  'properties.bootstrap.servers' = '127.0.0.1:9092',
  'properties.group.id' = 'spillway-trades',
  'scan.startup.mode' = 'earliest-offset',
  'scan.watermark.idle-timeout' = '5 s',
  'format' = 'json'
);

CREATE TABLE stats (
  symbol STRING,
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  trades BIGINT,
  volume BIGINT,
  avg_price DOUBLE,
  low DOUBLE,
  high DOUBLE
) WITH (
  'connector' = 'filesystem',
  'path' = 'out/stats.jsonl',
  'format' = 'json'
);

INSERT INTO stats
SELECT symbol, window_start, window_end,
       COUNT(*), SUM(volume), AVG(price), MIN(price), MAX(price)
FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND))
GROUP BY symbol, window_start, window_end;
