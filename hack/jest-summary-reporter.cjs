// Writes one plain line, "jest: N passed, N failed, N skipped", that CI log readers
// recognise regardless of jest's own summary format. Jest prints its summary after every
// reporter, so .ci/run repeats this line from TIDEMARK_TEST_SUMMARY as the run's last line.
const fs = require('node:fs');

class SummaryReporter {
  onRunComplete(_contexts, results) {
    const line = `jest: ${results.numPassedTests} passed, ${results.numFailedTests} failed, ${results.numPendingTests} skipped`;
    process.stderr.write(`\n${line}\n`);
    if (process.env.TIDEMARK_TEST_SUMMARY) fs.appendFileSync(process.env.TIDEMARK_TEST_SUMMARY, `${line}\n`);
  }
}
module.exports = SummaryReporter;
