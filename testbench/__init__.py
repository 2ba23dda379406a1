"""cocotb testbenches and their pytest runners, plus the stimulus/expectation helpers they
share with the amaranth.sim tests."""
