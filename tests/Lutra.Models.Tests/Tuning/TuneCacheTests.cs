using Lutra.Models.Tuning;

namespace Lutra.Models.Tests.Tuning;

public sealed class TuneCacheTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), $"lutra-tune-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_directory))
            Directory.Delete(_directory, recursive: true);
    }

    private string CachePath => Path.Combine(_directory, "nested", "tune.json");

    private static TuneDecision Decision(string shape, int threads = 1, params string[] ranking) =>
        new(new TuneKey("/m.gguf|10|20", "cpu; Avx512", threads, shape, ["mad", "lut"]), ranking.Length > 0 ? ranking : ["lut", "mad"],
            ranking.Length > 0 ? ranking.Select((_, i) => 10.0 + i).ToArray() : [12.5, 40]);

    [Fact]
    public void Decisions_round_trip_through_the_file()
    {
        var cache = new TuneCache(CachePath);
        Assert.Empty(cache.Read()); // no file yet
        Assert.True(cache.Store([Decision("Q4_0 2048x2048"), Decision("Q4_0 8192x2048", ranking: ["mad", "lut"])]));

        var reread = new TuneCache(CachePath);
        var found = reread.Find(Decision("Q4_0 2048x2048").Key);
        Assert.NotNull(found);
        Assert.Equal(["lut", "mad"], found.Ranking);
        Assert.Equal([12.5, 40], found.Microseconds);
        Assert.Equal(["mad", "lut"], reread.Find(Decision("Q4_0 8192x2048").Key)!.Ranking);
        Assert.Equal(2, reread.Read().Count);
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(CachePath)!, "*.tmp"));
    }

    [Fact]
    public void Storing_a_key_again_replaces_it_and_keeps_the_others()
    {
        var cache = new TuneCache(CachePath);
        cache.Store([Decision("a"), Decision("b")]);
        cache.Store([Decision("a", ranking: ["mad", "lut"])]);
        Assert.Equal(2, cache.Read().Count);
        Assert.Equal(["mad", "lut"], cache.Find(Decision("a").Key)!.Ranking);
        Assert.Equal(["lut", "mad"], cache.Find(Decision("b").Key)!.Ranking);
    }

    [Fact]
    public void Any_change_of_key_misses()
    {
        var cache = new TuneCache(CachePath);
        var stored = Decision("Q4_0 2048x2048");
        cache.Store([stored]);
        var k = stored.Key;
        Assert.NotNull(cache.Find(k with { Candidates = ["mad", "lut"] }));
        Assert.Null(cache.Find(k with { Model = "/m.gguf|10|21" }));
        Assert.Null(cache.Find(k with { Cpu = "cpu; Avx2" }));
        Assert.Null(cache.Find(k with { Threads = 2 }));
        Assert.Null(cache.Find(k with { Shape = "Q4_0 2048x2049" }));
        Assert.Null(cache.Find(k with { Candidates = ["mad", "lut", "interleaved"] }));
        Assert.Null(cache.Find(k with { Candidates = ["lut", "mad"] }));
    }

    [Theory]
    [InlineData("not json at all")]
    [InlineData("{\"version\": 1, \"decisions\": [ {\"model\": ")]
    [InlineData("{\"version\": 99, \"decisions\": []}")]
    [InlineData("[1, 2, 3]")]
    [InlineData("{\"version\": 1, \"decisions\": [null, {\"model\": \"x\"}, {\"model\": \"/m\", \"cpu\": \"c\", \"threads\": 1, \"shape\": \"s\", \"candidates\": [\"mad\"], \"ranking\": [\"lut\"], \"microseconds\": [1]}]}")]
    public void A_corrupt_file_reads_as_empty_and_is_replaced_by_the_next_write(string content)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(CachePath)!);
        File.WriteAllText(CachePath, content);
        var cache = new TuneCache(CachePath);
        Assert.Empty(cache.Read());
        Assert.Null(cache.Find(Decision("a").Key));
        Assert.True(cache.Store([Decision("a")]));
        Assert.NotNull(new TuneCache(CachePath).Find(Decision("a").Key));
    }

    [Fact]
    public void An_unwritable_location_is_ignored()
    {
        Directory.CreateDirectory(_directory);
        var blocker = Path.Combine(_directory, "file");
        File.WriteAllText(blocker, "a file where the cache wants a directory");
        var cache = new TuneCache(Path.Combine(blocker, "tune.json"));
        Assert.Empty(cache.Read());
        Assert.False(cache.Store([Decision("a")]));
    }

    [Fact]
    public void Old_decisions_beyond_the_limit_are_dropped()
    {
        var cache = new TuneCache(CachePath);
        cache.Store(Enumerable.Range(0, TuneCache.MaxDecisions).Select(i => Decision($"old {i}")).ToArray());
        cache.Store([Decision("new")]);
        var all = cache.Read();
        Assert.Equal(TuneCache.MaxDecisions, all.Count);
        Assert.NotNull(cache.Find(Decision("new").Key));
    }

    [Fact]
    public void Concurrent_writers_leave_a_readable_file()
    {
        Parallel.For(0, 8, i => new TuneCache(CachePath).Store([Decision($"shape {i}")]));
        var all = new TuneCache(CachePath).Read();
        Assert.NotEmpty(all); // some writes may be lost to a concurrent rename, never the file
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(CachePath)!, "*.tmp"));
    }
}
