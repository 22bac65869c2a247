using Lutra.Core.Threading;

namespace Lutra.Core.Tests;

public class ComputePoolTests
{
    private sealed class CountingWork(int items) : IComputeWork
    {
        public readonly int[] Hits = new int[items];

        public void Execute(int threadIndex, int threadCount)
        {
            var (start, end) = ComputePool.Partition(Hits.Length, threadIndex, threadCount, granularity: 4);
            for (var i = start; i < end; i++)
                Hits[i]++;
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Every_item_is_processed_exactly_once_per_run(int threads)
    {
        using var pool = new ComputePool(threads);
        var work = new CountingWork(1001);
        for (var run = 0; run < 500; run++)
            pool.Run(work);
        Assert.All(work.Hits, h => Assert.Equal(500, h));
    }

    [Fact]
    public void Workers_wake_after_sleeping()
    {
        using var pool = new ComputePool(2);
        var work = new CountingWork(10);
        pool.Run(work);
        Thread.Sleep(200); // long enough for the worker to stop spinning and sleep
        pool.Run(work);
        Assert.All(work.Hits, h => Assert.Equal(2, h));
    }

    private sealed class FailingWork : IComputeWork
    {
        public void Execute(int threadIndex, int threadCount)
        {
            if (threadIndex == threadCount - 1)
                throw new InvalidOperationException("boom");
        }
    }

    [Fact]
    public void An_exception_on_a_worker_reaches_the_caller_and_the_pool_stays_usable()
    {
        using var pool = new ComputePool(2);
        Assert.Throws<InvalidOperationException>(() => pool.Run(new FailingWork()));
        var work = new CountingWork(8);
        pool.Run(work);
        Assert.All(work.Hits, h => Assert.Equal(1, h));
    }

    [Theory]
    [InlineData(0, 3, 1)]
    [InlineData(7, 2, 4)]
    [InlineData(100, 3, 32)]
    [InlineData(5, 8, 1)]
    public void Partition_covers_the_range_without_gaps_or_overlap(int total, int count, int granularity)
    {
        var next = 0;
        for (var i = 0; i < count; i++)
        {
            var (s, e) = ComputePool.Partition(total, i, count, granularity);
            Assert.Equal(next, s);
            Assert.True(e >= s);
            if (e < total)
                Assert.Equal(0, (e - s) % granularity);
            next = e;
        }
        Assert.Equal(total, next);
    }
}
