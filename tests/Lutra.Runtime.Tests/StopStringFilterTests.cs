using Lutra.Runtime.Generation;

namespace Lutra.Runtime.Tests;

public class StopStringFilterTests
{
    [Fact]
    public void Text_without_stop_strings_passes_through()
    {
        var f = new StopStringFilter([]);
        Assert.Equal("abc", f.Push("abc"));
        Assert.Equal("", f.Flush());
    }

    [Fact]
    public void A_possible_stop_prefix_is_held_back_then_released()
    {
        var f = new StopStringFilter(["END"]);
        Assert.Equal("hello ", f.Push("hello E"));
        Assert.Equal("", f.Push("N"));
        Assert.Equal("ENx", f.Push("x"));
        Assert.False(f.Stopped);
    }

    [Fact]
    public void A_stop_string_split_over_pieces_cuts_the_text_before_it()
    {
        var f = new StopStringFilter(["\n\n", "User:"]);
        Assert.Equal("one", f.Push("one\n"));
        Assert.Equal("", f.Push("\ntwo"));
        Assert.True(f.Stopped);
        Assert.Equal("", f.Push("more"));
        Assert.Equal("", f.Flush());
    }

    [Fact]
    public void Held_back_text_is_flushed_at_the_end()
    {
        var f = new StopStringFilter(["User:"]);
        Assert.Equal("a", f.Push("aUse"));
        Assert.Equal("Use", f.Flush());
    }
}
