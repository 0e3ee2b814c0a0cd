// The single list of test projects. vitest.config.ts hands it to `test.projects`, because vitest 3.2
// deprecates loading this file by itself.
export default ["packages/*/vitest.config.ts"]
