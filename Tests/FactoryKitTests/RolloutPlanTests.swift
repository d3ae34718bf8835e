import FactoryKit
import Testing

@Suite struct RolloutPlanTests {
    @Test func wavesPutExplicitCanariesFirstThenTheRestByID() {
        let live = ["f-6", "f-2", "f-4", "f-1", "f-5", "f-3"]
        #expect(Rollout.waves(live: live, canaryTargets: [], canary: .count(1), batch: .count(2))
                == [["f-1"], ["f-2", "f-3"], ["f-4", "f-5"], ["f-6"]])
        #expect(Rollout.waves(live: live, canaryTargets: ["f-5"], canary: .count(2), batch: .percent(50))
                == [["f-5", "f-1"], ["f-2", "f-3", "f-4"], ["f-6"]])
        // A canary that is not live is left out; no batch size means one wave for the rest.
        #expect(Rollout.waves(live: live, canaryTargets: ["gone-1"], canary: nil, batch: nil)
                == [["f-1", "f-2", "f-3", "f-4", "f-5", "f-6"]])
        #expect(Rollout.waves(live: ["a"], canaryTargets: [], canary: .percent(10), batch: .percent(10)) == [["a"]])
    }

    @Test func aFailureRateIsMoreThanKFailuresWithinOneSpanOfSeconds() {
        let rate = Rollout.FailureRate("2/60")
        #expect(rate == Rollout.FailureRate(failures: 2, seconds: 60))
        // Invalid forms are refused, not guessed.
        #expect(["2", "2/", "/60", "-1/60", "2/0", "2/100000", "a/b", "2/60/1"].allSatisfy { Rollout.FailureRate($0) == nil })
        // Three failures 100 s apart never put three in one minute; three within 60 s do.
        #expect(rate?.exceeded(by: [0, 100, 200]) == false && rate?.exceeded(by: [0, 100, 130, 160]) == true
                && Rollout.FailureRate("0/1")?.exceeded(by: [5]) == true)
    }

    @Test func sizesAreCountsOrPercentages() {
        #expect(Rollout.Size("3") == .count(3))
        #expect(Rollout.Size("25%") == .percent(25))
        for bad in ["0", "-1", "0%", "101%", "x", "", "%"] { #expect(Rollout.Size(bad) == nil, "\(bad)") }
    }
}
