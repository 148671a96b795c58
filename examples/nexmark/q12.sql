-- Nexmark q12, processing-time windows: how many bids each user makes in each 10 seconds of
-- wall-clock time (processing time, not the bids' event time).
--
-- As published, apart from the table definitions (spillway's nexmark connector with one
-- table per event kind instead of Flink's one nested `datagen` table and its view: the
-- computed column `p_time AS PROCTIME()`, which Flink declares in the view, is declared in
-- the CREATE TABLE), the sink (blackhole), and a `rate` so that the 10 million events span
-- several wall-clock windows instead of arriving within one. The rows are not reproducible
-- from run to run (that is what processing time means); the count per bidder summed over
-- all windows is. Windows fire when every shard's wall clock passes their end (the rest
-- when the bounded input ends). With checkpoints, open windows are restored and fire once
-- the restarted engine's clock passes their end.

CREATE TABLE bid (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  channel VARCHAR,
  url VARCHAR,
  dateTime TIMESTAMP(3),
  extra VARCHAR,
  p_time AS PROCTIME(),
  WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH (
  'connector' = 'nexmark',
  'nexmark.table' = 'bid',
  'events.num' = '10000000',
  'rate' = '200000',
  'seed' = '0'
);

CREATE TABLE nexmark_q12 (
  bidder BIGINT,
  bid_count BIGINT,
  starttime TIMESTAMP(3),
  endtime TIMESTAMP(3)
) WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q12
SELECT
    B.bidder,
    count(*) as bid_count,
    window_start as starttime,
    window_end as endtime
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(p_time), INTERVAL '10' SECOND)) B
GROUP BY B.bidder, window_start, window_end;
