-- Nexmark q11, user sessions: how many bids each user makes while active, a user being
-- active until 10 seconds pass without a bid from them.
--
-- As published, apart from the table definitions (spillway's nexmark connector with one
-- table per event kind instead of Flink's one nested `datagen` table and its view) and the
-- sink (blackhole). Sessions are Flink's: windows of one bidder that overlap or touch merge;
-- starttime is the first bid, endtime the last bid + 10 s.

CREATE TABLE bid (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  channel VARCHAR,
  url VARCHAR,
  dateTime TIMESTAMP(3),
  extra VARCHAR,
  WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH (
  'connector' = 'nexmark',
  'nexmark.table' = 'bid',
  'events.num' = '10000000',
  'seed' = '0'
);

CREATE TABLE nexmark_q11 (
  bidder BIGINT,
  bid_count BIGINT,
  starttime TIMESTAMP(3),
  endtime TIMESTAMP(3)
) WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q11
SELECT
    B.bidder,
    count(*) as bid_count,
    SESSION_START(B.dateTime, INTERVAL '10' SECOND) as starttime,
    SESSION_END(B.dateTime, INTERVAL '10' SECOND) as endtime
FROM bid B
GROUP BY B.bidder, SESSION(B.dateTime, INTERVAL '10' SECOND);
