@testable import FactoryGateway
import FactoryKit
import Foundation
import Testing

@Suite struct FleetPageTests {
    @Test func theFleetPageMarksAFactoryWhoseEnvironmentIsOwed() {
        let now = Date()
        func registration(_ id: String, owed: String?) -> Registration {
            Registration(factoryID: id, factoryRole: "LOCAL_WORKER", registrationStatus: "online", capabilities: [],
                         metadata: owed.map { ["needs_attention": .string($0)] } ?? [:], branch: "main",
                         commit: String(repeating: "a", count: 40), version: "test", pid: 1, host: "h",
                         startedAt: now.timeIntervalSince1970, lastSeenAt: now.timeIntervalSince1970)
        }
        let overview = FleetOverview(registrations: [registration("f-owed", owed: "re-syncing <v1> failed"),
                                                     registration("f-fine", owed: nil)], jobs: [:])
        let html = FleetPage(overview: overview, now: now).html
        let rows = html.components(separatedBy: "<tr").filter { $0.contains("data-label=\"Factory\"") }
        #expect(rows.filter { $0.contains("needs attention") }.map { $0.contains("f-owed") } == [true], "\(rows)")
        #expect(html.contains("re-syncing &lt;v1&gt; failed"), "the reason is escaped into the title")
    }

    @Test func theFleetPageSaysAFactoryDefersAMissionAndUntilWhen() {
        let now = Date()
        let metadata: [String: JSONValue] = [
            "deferred": .string("deferred until 2026-12-08 02:00:00 +0100 (maintenance window <Mon-Fri 02:00-04:00>)"),
            "deferred_job_id": .string("update-0123456789ab"), "deferred_reason": .string("window"),
        ]
        let registration = Registration(factoryID: "f-night", factoryRole: "LOCAL_WORKER", registrationStatus: "online", capabilities: [],
                                        metadata: metadata, branch: "main", commit: String(repeating: "a", count: 40), version: "test",
                                        pid: 1, host: "h", startedAt: now.timeIntervalSince1970, lastSeenAt: now.timeIntervalSince1970)
        let html = FleetPage(overview: FleetOverview(registrations: [registration], jobs: [:]), now: now).html
        #expect(html.contains("online · deferred until 2026-12-08 02:00:00 +0100 (maintenance window &lt;Mon-Fri 02:00-04:00&gt;)"), "\(html)")
    }

    /// 10,000 factories: 9,990 fine, 5 stale, 5 whose last job failed (ids chosen to sort last).
    static func bigFleet(now: Date) -> FleetOverview {
        let registrations = (0..<10_000).map { index -> Registration in
            let id = "f-\(String(index).leftPaddedZeros(5))"
            let stale = index >= 9_990 && index < 9_995
            return Registration(factoryID: id, factoryRole: "LOCAL_WORKER", registrationStatus: "online", capabilities: [],
                                metadata: [:], branch: "main", commit: String(repeating: "a", count: 40), version: "test", pid: 1,
                                host: "h", startedAt: now.timeIntervalSince1970,
                                lastSeenAt: now.timeIntervalSince1970 - (stale ? 3_600 : 0),
                                lastJobID: "update-0123456789ab", lastJobStatus: index >= 9_995 ? "FAILED" : "SUCCESS")
        }
        return FleetOverview(registrations: registrations, jobs: [:])
    }

    static func factories(_ html: String) -> [String] {
        html.components(separatedBy: "<td data-label=\"Factory\">").dropFirst().map { String($0.prefix { $0 != "<" }) }
    }

    @Test func atTenThousandTheFirstPageIsASummaryAndTheFactoriesThatNeedAttentionFirst() {
        let now = Date()
        let html = FleetPage(overview: Self.bigFleet(now: now), now: now).html
        let shown = Self.factories(html)
        #expect(html.utf8.count <= 200_000 && html.contains("10000 factories") && html.contains("5 stale") && html.contains("5 failing")
                && shown.count == FleetPage.pageSize && shown.prefix(10) == ["f-09995", "f-09996", "f-09997", "f-09998", "f-09999",
                                                                          "f-09990", "f-09991", "f-09992", "f-09993", "f-09994"]
                && html.contains("href=\"/?page=2\""), "\(html.utf8.count) bytes, \(shown.prefix(12))")
    }

    @Test func filtersSearchAndPagesNarrowTheTableAndBadValuesAreIgnoredOrEscaped() {
        let now = Date()
        let overview = Self.bigFleet(now: now)
        func shown(_ parameters: [(String, String)]) -> [String] {
            Self.factories(FleetPage(overview: overview, now: now, query: FleetPage.Query(parameters: parameters)).html)
        }
        let hostile = FleetPage(overview: overview, now: now, query: FleetPage.Query(parameters: [("q", "\"><script>x</script>")])).html
        #expect(shown([("show", "stale")]) == (9_990..<9_995).map { "f-0\($0)" }
                && shown([("q", "f-0012")]) == (120..<130).map { "f-00\($0)" }
                && shown([("page", "2")]).first == "f-00090"
                && shown([("page", "999999")]).last == "f-09989"
                && shown([("show", "nonsense"), ("page", "x")]).count == FleetPage.pageSize
                && !hostile.contains("<script>x") && hostile.contains("No factory matches."))
    }
}

extension String {
    func leftPaddedZeros(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
