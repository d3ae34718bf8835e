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
}
