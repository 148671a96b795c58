-- Nexmark q7 simplified, highest bid: the highest price of every 10 second window.
--
-- Flink's nexmark q7 then joins this back to the bids to report the winning bid itself
-- (auction, bidder, dateTime, extra); spillway has no joins yet, so this is only q7's
-- inner aggregate, with the window's start and end.

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

CREATE TABLE nexmark_q7_simplified (
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  maxprice BIGINT
) WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q7_simplified
SELECT window_start, window_end, MAX(price) AS maxprice
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
GROUP BY window_start, window_end;
