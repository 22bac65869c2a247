using Lutra.Core.Diagnostics;
using Lutra.Core.Threading;

namespace Lutra.Core.Tests;

public class RepeatedTimingTests
{
    [Fact]
    public void Median_is_the_middle_value_or_the_mean_of_the_middle_two()
    {
        Assert.Equal(3.0, RepeatedTiming.Median([9.0, 1.0, 3.0]));
        Assert.Equal(2.5, RepeatedTiming.Median([4.0, 1.0, 2.0, 3.0]));
        Assert.Equal(7.0, RepeatedTiming.Median([7.0]));
        Assert.Throws<ArgumentException>(() => RepeatedTiming.Median([]));
    }

    [Fact]
    public void A_cache_flush_reads_its_buffer_on_every_thread()
    {
        Assert.InRange(CacheFlush.DefaultBytes(), 2L << 20, 256L << 20);
        using var pool = new ComputePool(2);
        using var flush = new CacheFlush(4L << 20);
        flush.Run(pool);
        Assert.Equal(4L << 20, flush.Length);
    }
}
